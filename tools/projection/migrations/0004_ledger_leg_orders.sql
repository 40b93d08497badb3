-- Each leg of a trade's transfer names its own user's order: the entry's order_id is the order
-- of the leg that pays (the `from` leg), to_order_id the order of the leg that is paid, the
-- counterparty's (NULL: the same as order_id). Before, a user's credit from a trade showed the
-- counterparty's order id in ledger_legs (and the history API): a review finding.
ALTER TABLE ledger
    ADD COLUMN to_order_id BIGINT;                -- the `to` leg's order when it differs from order_id
-- Entries projected before this column came: a trade's other order is in its trades row.
UPDATE ledger l
   SET to_order_id = CASE WHEN l.order_id = t.taker_order_id THEN t.maker_order_id ELSE t.taker_order_id END
  FROM trades t
 WHERE l.kind = 'trade' AND t.symbol_id = l.symbol_id AND t.trade_id = l.trade_id;
CREATE OR REPLACE VIEW ledger_legs AS
    SELECT seq, entry, 1::smallint AS leg, ts, kind, currency_id, from_account AS account,
           from_user_id AS user_id, -amount AS amount, symbol_id, order_id, trade_id, withdrawal_id
      FROM ledger WHERE seq <= (SELECT last_seq FROM projection_state WHERE id = 1)
    UNION ALL
    SELECT seq, entry, 2::smallint AS leg, ts, kind, currency_id, to_account AS account,
           to_user_id AS user_id, amount, symbol_id, coalesce(to_order_id, order_id) AS order_id,
           trade_id, withdrawal_id
      FROM ledger WHERE seq <= (SELECT last_seq FROM projection_state WHERE id = 1);
