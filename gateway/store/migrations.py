"""Named, ordered schema migrations. Never edit one that has shipped: add the next."""

from __future__ import annotations

import sqlite3
import time

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_orders_journal_tokens",
        """
        CREATE TABLE orders (
            uuid TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            order_type TEXT NOT NULL,
            location TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL CHECK (state IN ('started', 'located', 'cleared')),
            created REAL NOT NULL,
            state_changed REAL NOT NULL,
            paged INTEGER NOT NULL DEFAULT 0,
            tracking INTEGER NOT NULL DEFAULT 0,
            tracker TEXT,
            located_at REAL,
            cleared_at REAL,
            clear_reason TEXT
        );
        -- At most one active order per number: the database enforces what the service assumes.
        CREATE UNIQUE INDEX orders_active_name ON orders(name) WHERE state != 'cleared';
        CREATE INDEX orders_created ON orders(created);
        CREATE TABLE journal (
            seq INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            type TEXT NOT NULL,
            order_uuid TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            digest BLOB NOT NULL UNIQUE,
            created REAL NOT NULL,
            last_used REAL,
            ip_address TEXT,
            revoked REAL
        );
        CREATE TABLE gateway_settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE webhook_clients (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            api_version TEXT NOT NULL,
            created REAL NOT NULL
        );
        """,
    ),
    (
        "0002_trackers",
        """
        CREATE TABLE trackers (
            number INTEGER PRIMARY KEY,
            address TEXT NOT NULL UNIQUE,
            paired_at REAL NOT NULL,
            battery INTEGER,
            last_seen REAL
        );
        CREATE INDEX orders_active_tracker ON orders(tracker) WHERE state != 'cleared';
        """,
    ),
    (
        "0003_printing_outbox",
        """
        CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            address TEXT NOT NULL,
            station TEXT NOT NULL DEFAULT '',
            paper TEXT NOT NULL DEFAULT '80mm',
            source TEXT NOT NULL CHECK (source IN ('settings', 'api', 'mdns', 'demo')),
            date_created REAL NOT NULL,
            status TEXT,
            status_detail TEXT NOT NULL DEFAULT '',
            status_date REAL,
            is_online INTEGER NOT NULL DEFAULT 0,
            date_last_seen REAL,
            password TEXT,
            phone_number TEXT,
            removed REAL
        );
        CREATE TABLE print_requests (
            id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL REFERENCES devices(id),
            date_created REAL NOT NULL,
            deadline REAL NOT NULL,
            reserved TEXT,
            command TEXT NOT NULL,
            data TEXT,
            station TEXT NOT NULL DEFAULT '',
            order_uuid TEXT,
            report_url TEXT,
            process_status TEXT NOT NULL,
            process_status_date REAL NOT NULL,
            date_sent REAL,
            output_data TEXT,
            date_received REAL,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            delivered_once INTEGER NOT NULL DEFAULT 0,
            report TEXT NOT NULL
        );
        CREATE INDEX print_requests_device ON print_requests(device_id, date_created);
        CREATE INDEX print_requests_open ON print_requests(device_id, deadline)
            WHERE process_status != 'archived';
        -- The durable outbox: rows are written in the transaction of the change they report.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            endpoint TEXT NOT NULL,
            url TEXT NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL DEFAULT '',
            content_type TEXT NOT NULL,
            body BLOB NOT NULL,
            created REAL NOT NULL,
            next_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'dead')),
            last_status INTEGER,
            last_error TEXT,
            finished REAL
        );
        CREATE INDEX outbox_pending ON outbox(endpoint, id) WHERE state = 'pending';
        """,
    ),
    (
        "0004_order_items",
        """
        ALTER TABLE orders ADD COLUMN number INTEGER;
        ALTER TABLE orders ADD COLUMN source TEXT NOT NULL DEFAULT '';
        ALTER TABLE orders ADD COLUMN external_id TEXT NOT NULL DEFAULT '';
        ALTER TABLE orders ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE orders ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';
        UPDATE orders SET number = (
            SELECT n FROM (SELECT uuid AS u, row_number() OVER (ORDER BY created, rowid) AS n
                           FROM orders) WHERE u = orders.uuid);
        CREATE UNIQUE INDEX orders_number ON orders(number);
        CREATE INDEX orders_external ON orders(source, external_id) WHERE external_id != '';
        CREATE TABLE order_items (
            order_uuid TEXT NOT NULL,
            position INTEGER NOT NULL,
            id TEXT NOT NULL,
            title TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            product_code TEXT NOT NULL DEFAULT '',
            price INTEGER,
            notes TEXT NOT NULL DEFAULT '',
            station TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            status_changed REAL NOT NULL,
            cause TEXT NOT NULL DEFAULT '',
            delay INTEGER,
            message TEXT NOT NULL DEFAULT '',
            extra TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (order_uuid, position)
        );
        CREATE UNIQUE INDEX order_items_id ON order_items(id);
        """,
    ),
    (
        "0005_integrations",
        """
        -- Inbound credentials. Imprinted signs with SHA1(body + secret), so its secret must be
        -- kept to verify; a CloudSignal apikey is only compared, so only its digest is kept.
        CREATE TABLE integration_keys (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('imprinted', 'cloudsignal')),
            name TEXT NOT NULL,
            app_id TEXT NOT NULL,
            secret TEXT,
            key_digest BLOB,
            created REAL NOT NULL,
            revoked REAL,
            UNIQUE (kind, app_id)
        );
        -- Outbound subscriptions (Print API webhooks, CloudSignal signals); table-tracker
        -- `register` clients stay in webhook_clients.
        CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('printapi', 'cloudsignal')),
            url TEXT NOT NULL,
            signing_secret TEXT,
            apikey TEXT,
            created REAL NOT NULL,
            disabled REAL,
            disabled_reason TEXT,
            UNIQUE (kind, url)
        );
        -- Signatures seen recently (Imprinted replay protection), pruned by age.
        CREATE TABLE replay_cache (
            digest BLOB PRIMARY KEY,
            seen REAL NOT NULL
        );
        CREATE INDEX replay_cache_seen ON replay_cache(seen);
        """,
    ),
]


def apply_migrations(conn: sqlite3.Connection) -> list[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    applied: list[str] = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        # executescript commits first; wrap each migration so it lands whole or not at all.
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\n"
                f"INSERT INTO migrations(name, applied) VALUES ('{name}', {time.time()});\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
