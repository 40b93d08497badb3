-- ringbook projection schema: every migration of tools/projection/migrations, in order.
-- Generated from the embedded migrations; `ringbook project` applies them itself.

-- migration 1: initial
-- ringbook projection, migration 1: the read-side schema.
--
-- Every amount is an integer number of the currency's minimal units (currencies.scale decimal
-- digits), every price an integer number of ticks per lot, every quantity an integer number of
-- lots, every time engine time in Unix nanoseconds: no floating point anywhere. Rows are keyed by
-- what the engine assigns deterministically (journal sequence, order id, trade id, withdrawal id),
-- so a rebuild from the journal yields identical tables.

-- Reference data, from the engine configuration the journal was written with.
CREATE TABLE currencies (
    currency_id   SMALLINT PRIMARY KEY,
    code          TEXT NOT NULL UNIQUE,
    scale         SMALLINT NOT NULL CHECK (scale >= 0)
);

CREATE TABLE symbols (
    symbol_id         SMALLINT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    base_currency_id  SMALLINT NOT NULL REFERENCES currencies,
    quote_currency_id SMALLINT NOT NULL REFERENCES currencies,
    lot_size          BIGINT NOT NULL,   -- base minimal units per lot
    tick_size         BIGINT NOT NULL,   -- quote minimal units per tick per lot
    price_min         BIGINT NOT NULL,
    price_max         BIGINT NOT NULL,
    maker_fee_bps     INTEGER NOT NULL,
    taker_fee_bps     INTEGER NOT NULL,
    max_order_qty     BIGINT NOT NULL
);

-- An account opens with its first deposit.
CREATE TABLE accounts (
    user_id     BIGINT PRIMARY KEY,
    opened_seq  BIGINT NOT NULL,
    opened_ts   BIGINT NOT NULL
);

-- Every order, with its whole lifecycle. `seq` is the journal sequence of the command that
-- placed it (rejected orders have no engine order id, so the sequence is the key).
CREATE TABLE orders (
    seq             BIGINT PRIMARY KEY,
    order_id        BIGINT UNIQUE,                -- NULL for a rejected order
    user_id         BIGINT NOT NULL,
    symbol_id       SMALLINT NOT NULL,
    client_order_id NUMERIC(20, 0) NOT NULL,      -- the client's u64
    side            TEXT NOT NULL,                -- BUY | SELL
    order_type      TEXT NOT NULL,                -- LIMIT | MARKET | STOP_LIMIT | STOP_MARKET
    tif             TEXT NOT NULL,                -- GTC | IOC | FOK
    price           BIGINT NOT NULL,              -- limit (or protection) price, ticks per lot
    stop_price      BIGINT,                       -- stop orders only
    qty             BIGINT NOT NULL,              -- as placed (amends change open_qty)
    display_qty     BIGINT NOT NULL,              -- iceberg peak, 0 for a plain order
    post_only       BOOLEAN NOT NULL,
    stp             TEXT NOT NULL,
    status          TEXT NOT NULL,                -- NEW | PARTIALLY_FILLED | FILLED | CANCELLED | EXPIRED | REJECTED
    leaves_qty      BIGINT NOT NULL,              -- open quantity (0 once finished)
    filled_qty      BIGINT NOT NULL,
    filled_notional BIGINT NOT NULL,              -- quote minimal units
    fees            BIGINT NOT NULL,              -- quote minimal units this order paid
    avg_price       NUMERIC GENERATED ALWAYS AS
                        (CASE WHEN filled_qty > 0 THEN filled_notional::numeric / filled_qty END) STORED,
                                                  -- quote minimal units per lot (divide by tick_size for ticks)
    reject_code     INTEGER,
    reject_name     TEXT,
    cancel_reason   TEXT,                         -- why a CANCELLED/EXPIRED order (or an STP decrement) ended
    triggered_ts    BIGINT,                       -- when a stop order triggered
    created_ts      BIGINT NOT NULL,
    updated_ts      BIGINT NOT NULL,
    updated_seq     BIGINT NOT NULL
);
CREATE INDEX orders_user_history ON orders (user_id, symbol_id, seq);
CREATE INDEX orders_live ON orders (user_id) WHERE status IN ('NEW', 'PARTIALLY_FILLED');

CREATE TABLE trades (
    symbol_id       SMALLINT NOT NULL,
    trade_id        BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    ts              BIGINT NOT NULL,
    price           BIGINT NOT NULL,
    qty             BIGINT NOT NULL,
    notional        BIGINT NOT NULL,              -- price x qty x tick_size, quote minimal units
    aggressor_side  TEXT NOT NULL,                -- the taker's side
    maker_order_id  BIGINT NOT NULL,
    maker_user_id   BIGINT NOT NULL,
    maker_fee       BIGINT NOT NULL,
    taker_order_id  BIGINT NOT NULL,
    taker_user_id   BIGINT NOT NULL,
    taker_fee       BIGINT NOT NULL,
    PRIMARY KEY (symbol_id, trade_id)
);
CREATE INDEX trades_maker_user ON trades (maker_user_id, seq);
CREATE INDEX trades_taker_user ON trades (taker_user_id, seq);

-- The double-entry ledger. An entry is (seq, entry): one movement caused by the command at
-- journal sequence `seq`, of `amount` (> 0) in one currency from one account to another — its
-- two legs: the `from` account falls by the amount, the `to` account rises by it, so every
-- entry balances by construction. Accounts: a user's `available` and `locked` funds, the
-- exchange's `fees` revenue and `external` (the world outside the exchange: deposits come from
-- it, withdrawals go to it). So per currency the user and fee accounts hold deposits minus
-- withdrawals, and `external` its negation. `ledger_legs` shows each entry as its two signed
-- legs, up to the projected sequence: the ledger is written on a connection of its own and its
-- transaction commits just before the batch's main one, so for a moment (or after a crash
-- between the two, until the projector restarts) `ledger` may hold entries past
-- projection_state.last_seq. Read the ledger through `ledger_legs`, or filter on last_seq.
CREATE TABLE ledger (
    seq            BIGINT NOT NULL,
    entry          INTEGER NOT NULL,
    ts             BIGINT NOT NULL,
    kind           TEXT NOT NULL,   -- deposit | lock | unlock | trade | fee | withdrawal
    currency_id    SMALLINT NOT NULL,
    from_account   TEXT NOT NULL,   -- available | locked | fees | external
    from_user_id   BIGINT,          -- NULL for fees and external
    to_account     TEXT NOT NULL,
    to_user_id     BIGINT,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    symbol_id      SMALLINT,
    order_id       BIGINT,
    trade_id       BIGINT,
    withdrawal_id  BIGINT,
    PRIMARY KEY (seq, entry)
);
CREATE INDEX ledger_from_user ON ledger (from_user_id, currency_id, seq) WHERE from_user_id IS NOT NULL;
CREATE INDEX ledger_to_user ON ledger (to_user_id, currency_id, seq) WHERE to_user_id IS NOT NULL;

-- Current balances, maintained from the ledger (the sum of each user account's legs).
CREATE TABLE balances (
    user_id      BIGINT NOT NULL,
    currency_id  SMALLINT NOT NULL,
    available    BIGINT NOT NULL,
    locked       BIGINT NOT NULL,
    updated_seq  BIGINT NOT NULL,
    PRIMARY KEY (user_id, currency_id)
);

CREATE TABLE withdrawals (
    withdrawal_id   BIGINT PRIMARY KEY,
    user_id         BIGINT NOT NULL,
    currency_id     SMALLINT NOT NULL,
    amount          BIGINT NOT NULL,
    status          TEXT NOT NULL,   -- PENDING | COMPLETED | REJECTED
    approvals       SMALLINT NOT NULL,
    rejected_by     BIGINT,
    requested_seq   BIGINT NOT NULL,
    requested_ts    BIGINT NOT NULL,
    finished_seq    BIGINT,
    finished_ts     BIGINT
);

CREATE TABLE withdrawal_approvals (
    withdrawal_id  BIGINT NOT NULL,
    operator_id    BIGINT NOT NULL,
    approvals      SMALLINT NOT NULL,  -- distinct approvals after this one (2 completes it)
    seq            BIGINT NOT NULL,
    ts             BIGINT NOT NULL,
    PRIMARY KEY (withdrawal_id, operator_id)
);

-- Candles of every market-data interval (1m 5m 15m 30m 1h 4h 1d 1w), from the trades.
CREATE TABLE candles (
    symbol_id       SMALLINT NOT NULL,
    interval        TEXT NOT NULL,
    open_time       BIGINT NOT NULL,
    open            BIGINT NOT NULL,
    high            BIGINT NOT NULL,
    low             BIGINT NOT NULL,
    close           BIGINT NOT NULL,
    volume          BIGINT NOT NULL,   -- lots
    quote_volume    BIGINT NOT NULL,   -- quote minimal units
    trades          BIGINT NOT NULL,
    first_trade_id  BIGINT NOT NULL,
    last_trade_id   BIGINT NOT NULL,
    PRIMARY KEY (symbol_id, interval, open_time)
);

-- Where the projection stands: the last journal sequence whose rows are in the tables, written
-- in the same transaction as those rows (the ledger's, in a transaction of its own that commits
-- just before, are read up to it: ledger_legs).
CREATE TABLE projection_state (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    last_seq    BIGINT NOT NULL,   -- 0: nothing projected yet
    last_ts     BIGINT NOT NULL,
    commands    BIGINT NOT NULL,   -- journal records projected
    updated_at  TIMESTAMPTZ NOT NULL
);
INSERT INTO projection_state VALUES (1, 0, 0, 0, now());

CREATE VIEW ledger_legs AS
    SELECT seq, entry, 1::smallint AS leg, ts, kind, currency_id, from_account AS account,
           from_user_id AS user_id, -amount AS amount, symbol_id, order_id, trade_id, withdrawal_id
      FROM ledger WHERE seq <= (SELECT last_seq FROM projection_state WHERE id = 1)
    UNION ALL
    SELECT seq, entry, 2::smallint AS leg, ts, kind, currency_id, to_account AS account,
           to_user_id AS user_id, amount, symbol_id, order_id, trade_id, withdrawal_id
      FROM ledger WHERE seq <= (SELECT last_seq FROM projection_state WHERE id = 1);

-- migration 2: budget and expiry
-- Budget market buys and expiring orders (issue 11): what an order was placed with.
ALTER TABLE orders
    ADD COLUMN budget    BIGINT,                  -- a market buy's quote budget, quote minimal units (NULL: not a budget order)
    ADD COLUMN expire_at BIGINT;                  -- a GTD or DAY order's expiry, Unix ns (NULL: none); tif is now GTC | IOC | FOK | GTD | DAY

-- migration 3: journal digest
-- Which journal a projection is of (a database projected from one journal and resumed with
-- another mixed the two without a word: a red-team finding).
ALTER TABLE projection_state
    ADD COLUMN last_digest BIGINT;                -- a 64-bit digest of journal record last_seq (sequence, type, stamp, payload); NULL: nothing projected since this column came

-- migration 4: ledger leg orders
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
