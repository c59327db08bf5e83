-- The Node peer's own tables (bench/peers/node-pg/server.mjs), in its own fresh database.
CREATE TABLE orders (
    id text PRIMARY KEY,
    checkout_request_id text NOT NULL UNIQUE,
    amount integer NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'cancelled')),
    version integer NOT NULL DEFAULT 1,
    receipt text UNIQUE,
    paid_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE callback_records (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    remote_addr text,
    body text NOT NULL,
    checkout_request_id text,
    outcome text NOT NULL DEFAULT 'received'
);
CREATE INDEX ix_callback_records_checkout_request_id ON callback_records (checkout_request_id);
