-- Which journal a projection is of (a database projected from one journal and resumed with
-- another mixed the two without a word: a red-team finding).
ALTER TABLE projection_state
    ADD COLUMN last_digest BIGINT;                -- a 64-bit digest of journal record last_seq (sequence, type, stamp, payload); NULL: nothing projected since this column came
