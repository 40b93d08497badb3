-- Each leg of a trade's transfer names its own user's order: the entry's order_id is the order
-- of the leg that pays (the `from` leg), to_order_id the order of the leg that is paid, the
-- counterparty's (NULL: the same as order_id). Before, a user's credit from a trade showed the
-- counterparty's order id in ledger_legs (and the history API): a review finding.
ALTER TABLE ledger
    ADD COLUMN to_order_id BIGINT;                -- the `to` leg's order when it differs from order_id
-- Entries projected before this column came have it NULL (the migration rewrites nothing, so it
-- takes no time on a large ledger): for a trade's the view finds the trade's other order in its
-- trades row.
CREATE OR REPLACE VIEW ledger_legs AS
    SELECT seq, entry, 1::smallint AS leg, ts, kind, currency_id, from_account AS account,
           from_user_id AS user_id, -amount AS amount, symbol_id, order_id, trade_id, withdrawal_id
      FROM ledger WHERE seq <= (SELECT last_seq FROM projection_state WHERE id = 1)
    UNION ALL
    SELECT l.seq, l.entry, 2::smallint AS leg, l.ts, l.kind, l.currency_id, l.to_account AS account,
           l.to_user_id AS user_id, l.amount, l.symbol_id,
           CASE WHEN l.to_order_id IS NOT NULL THEN l.to_order_id
                WHEN l.kind = 'trade' THEN
                    (SELECT CASE WHEN t.taker_order_id = l.order_id THEN t.maker_order_id
                                 ELSE t.taker_order_id END
                       FROM trades t WHERE t.symbol_id = l.symbol_id AND t.trade_id = l.trade_id)
                ELSE l.order_id END AS order_id,
           l.trade_id, l.withdrawal_id
      FROM ledger l WHERE l.seq <= (SELECT last_seq FROM projection_state WHERE id = 1);
