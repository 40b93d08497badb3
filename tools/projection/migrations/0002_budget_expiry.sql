-- Budget market buys and expiring orders (issue 11): what an order was placed with.
ALTER TABLE orders
    ADD COLUMN budget    BIGINT,                  -- a market buy's quote budget, quote minimal units (NULL: not a budget order)
    ADD COLUMN expire_at BIGINT;                  -- a GTD or DAY order's expiry, Unix ns (NULL: none); tif is now GTC | IOC | FOK | GTD | DAY
