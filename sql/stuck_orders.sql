-- stuck_orders: one row per order in the triage window, as of the tick :as_of (SPEC §4).
--
-- Rows whose `scope` is 'candidate' are the stuck candidates, enriched from every source.
-- Rows with scope 'unknown_sub_state' (a sub_state in neither list, DEC-008) or
-- 'out_of_scope_currency' are returned without enrichment so they can be counted and reported.
--
-- Bound parameters: :as_of, :window_start, :newest_created (UTC timestamps);
-- :currencies, :statuses, :actionable_sub_states, :never_sub_states (expanding lists).
-- Point in time: a source row exists at :as_of only if created at or before it; "latest" prefers
-- rows last touched at or before :as_of. One-to-many sources are reduced to one row per key.
-- Portable subset (Redshift, PostgreSQL, DuckDB): no vendor date functions, no :: casts.
WITH window_orders AS (
    SELECT
        o.order_id,
        o.owner_id,
        o.status AS current_status,
        o.sub_state AS current_sub_state,
        UPPER(TRIM(o.meta_postscript_pricing_info_send_currency)) AS currency,
        o.meta_postscript_pricing_info_send_amount AS send_amount,
        o.meta_postscript_pricing_info_receive_amount AS receive_amount,
        o.meta_postscript_acquirer AS acquirer,
        o.created_at,
        o.updated_at
    FROM orders_goms o
    WHERE o.created_at >= :window_start
      AND o.created_at <= :newest_created
),

-- order_state:begin  (replaced by sql/order_state_current.sql when the warehouse has no history)
order_state AS (
    SELECT order_id, status, sub_state
    FROM (
        SELECT
            h.order_id,
            h.status,
            h.sub_state,
            ROW_NUMBER() OVER (
                PARTITION BY h.order_id ORDER BY h.changed_at DESC, h.status, h.sub_state
            ) AS rn
        FROM orders_goms_history h
        JOIN window_orders w ON w.order_id = h.order_id
        WHERE h.changed_at <= :as_of
    ) ranked
    WHERE rn = 1
),
-- order_state:end

scoped AS (
    SELECT
        w.order_id, w.owner_id, w.currency, w.send_amount, w.receive_amount, w.acquirer,
        w.created_at, w.updated_at,
        COALESCE(s.status, w.current_status) AS status,
        COALESCE(s.sub_state, w.current_sub_state) AS sub_state
    FROM window_orders w
    LEFT JOIN order_state s ON s.order_id = w.order_id
),

in_scope AS (
    SELECT
        scoped.*,
        CASE
            WHEN sub_state IN :actionable_sub_states AND currency IN :currencies THEN 'candidate'
            WHEN sub_state IN :actionable_sub_states THEN 'out_of_scope_currency'
            ELSE 'unknown_sub_state'
        END AS scope
    FROM scoped
    WHERE status IN :statuses
      AND (sub_state IS NULL OR sub_state NOT IN :never_sub_states)
),

candidates AS (
    SELECT order_id FROM in_scope WHERE scope = 'candidate'
),

payment_rows AS (
    SELECT
        p.reference_id AS order_id,
        p.payment_status,
        COALESCE(p.updated_at, p.created_at) AS touched_at,
        CASE WHEN COALESCE(p.updated_at, p.created_at) <= :as_of THEN 1 ELSE 0 END AS known
    FROM payments_goms p
    JOIN candidates c ON c.order_id = p.reference_id
    WHERE p.created_at <= :as_of
),

payment_summary AS (
    SELECT
        order_id,
        COUNT(*) AS payment_attempts,
        MAX(CASE WHEN payment_status = 'COMPLETED' AND known = 1 THEN 1 ELSE 0 END) AS completed_payments
    FROM payment_rows
    GROUP BY order_id
),

latest_payment AS (
    SELECT order_id, payment_status
    FROM (
        SELECT
            order_id,
            payment_status,
            ROW_NUMBER() OVER (
                PARTITION BY order_id ORDER BY known DESC, touched_at DESC, payment_status
            ) AS rn
        FROM payment_rows
    ) ranked
    WHERE rn = 1
),

falcon AS (
    SELECT order_id, transaction_id, status
    FROM (
        SELECT
            f.client_txn_id AS order_id,
            f.transaction_id,
            f.status,
            ROW_NUMBER() OVER (
                PARTITION BY f.client_txn_id ORDER BY f.created_at DESC, f.transaction_id DESC, f.status
            ) AS rn
        FROM falcon_transactions_v2 f
        JOIN candidates c ON c.order_id = f.client_txn_id
        WHERE f.created_at <= :as_of
    ) ranked
    WHERE rn = 1
),

payout AS (
    SELECT transaction_id, status, payout_partner
    FROM (
        SELECT
            t.transaction_id,
            t.status,
            t.payout_partner,
            ROW_NUMBER() OVER (
                PARTITION BY t.transaction_id
                ORDER BY
                    CASE WHEN COALESCE(t.updated_at, t.created_at) <= :as_of THEN 1 ELSE 0 END DESC,
                    COALESCE(t.updated_at, t.created_at) DESC,
                    t.status
            ) AS rn
        FROM transaction_payout t
        JOIN falcon f ON f.transaction_id = t.transaction_id
        WHERE t.created_at <= :as_of
    ) ranked
    WHERE rn = 1
),

lulu AS (
    SELECT order_id, sub_status, status, lulu_client
    FROM (
        SELECT
            l.order_id,
            l.sub_status,
            l.status,
            l.lulu_client,
            ROW_NUMBER() OVER (
                PARTITION BY l.order_id
                ORDER BY
                    CASE WHEN COALESCE(l.updated_at, l.created_at) <= :as_of THEN 1 ELSE 0 END DESC,
                    COALESCE(l.updated_at, l.created_at) DESC,
                    l.sub_status
            ) AS rn
        FROM lulu_data l
        JOIN candidates c ON c.order_id = l.order_id
        WHERE l.created_at <= :as_of
    ) ranked
    WHERE rn = 1
),

rfi AS (
    SELECT order_id, status, rfitype, created_at, modified_at
    FROM (
        SELECT
            r.reference_id AS order_id,
            r.status,
            r.rfitype,
            r.created_at,
            r.modified_at,
            ROW_NUMBER() OVER (
                PARTITION BY r.reference_id
                ORDER BY
                    CASE WHEN COALESCE(r.modified_at, r.created_at) <= :as_of THEN 1 ELSE 0 END DESC,
                    COALESCE(r.modified_at, r.created_at) DESC,
                    r.status
            ) AS rn
        FROM transfer_rfi r
        JOIN candidates c ON c.order_id = r.reference_id
        WHERE r.created_at <= :as_of
    ) ranked
    WHERE rn = 1
),

-- The next three sources carry no timestamps: one deterministic row per key, not point in time.
manual_payment AS (
    SELECT m.order_id, MAX(m.status) AS status
    FROM uae_manual_payments m
    JOIN candidates c ON c.order_id = m.order_id
    GROUP BY m.order_id
),

checkout AS (
    SELECT k.order_id, MAX(k.status) AS status
    FROM checkout_payment_data k
    JOIN candidates c ON c.order_id = k.order_id
    GROUP BY k.order_id
),

rda AS (
    SELECT d.order_id AS transaction_id, MAX(d.status) AS status
    FROM rda_fulfillments d
    JOIN falcon f ON f.transaction_id = d.order_id
    GROUP BY d.order_id
),

fulfillment AS (
    SELECT order_id, created_at, updated_at
    FROM (
        SELECT
            g.order_id,
            g.created_at,
            g.updated_at,
            ROW_NUMBER() OVER (
                PARTITION BY g.order_id ORDER BY COALESCE(g.updated_at, g.created_at) DESC
            ) AS rn
        FROM fulfillments_goms g
        JOIN candidates c ON c.order_id = g.order_id
        WHERE g.created_at <= :as_of
    ) ranked
    WHERE rn = 1
)

SELECT
    s.order_id,
    s.scope,
    s.owner_id,
    s.status,
    s.sub_state,
    s.currency,
    s.send_amount,
    s.receive_amount,
    s.acquirer,
    s.created_at,
    s.updated_at,
    lp.payment_status,
    CASE WHEN ps.completed_payments = 1 THEN TRUE ELSE FALSE END AS has_completed_payment,
    COALESCE(ps.payment_attempts, 0) AS payment_attempts,
    f.status AS falcon_status,
    f.transaction_id AS ftv_transaction_id,
    CASE WHEN l.order_id IS NOT NULL THEN TRUE ELSE FALSE END AS has_lulu,
    l.sub_status AS lulu_status,
    l.status AS lulu_main_status,
    l.lulu_client,
    CASE WHEN po.transaction_id IS NOT NULL THEN TRUE ELSE FALSE END AS has_payout,
    po.status AS payout_status,
    po.payout_partner,
    CASE
        WHEN s.receive_amount > 50000
             AND po.payout_partner IN ('SINGHAI_2025_V2', 'VELTOPAYZ_V4', 'VELTOPAYZ_V5', 'VELTOPAYZ_V6')
            THEN 'bulk_vda_partner'
        WHEN po.payout_partner IN ('VELTOPAYZ_HVT_BULK', 'VELTOPAYZ_KPR_BULK', 'ARMSTRONG_PARTNER_DASHBOARD',
                                   'TANGOPE_V3')
            THEN 'bulk_vda_partner'
        WHEN po.payout_partner = 'VANCE_RDA' THEN 'rda_partner'
        WHEN po.payout_partner IS NOT NULL THEN 'vda_api_partner'
    END AS partner_class,
    CASE WHEN r.order_id IS NOT NULL THEN TRUE ELSE FALSE END AS has_rfi,
    r.status AS rfi_status,
    r.rfitype AS rfi_type,
    r.created_at AS rfi_created_at,
    r.modified_at AS rfi_modified_at,
    mp.status AS manual_payment_status,
    ck.status AS checkout_status,
    CASE WHEN g.order_id IS NOT NULL THEN TRUE ELSE FALSE END AS has_trm,
    EXTRACT(EPOCH FROM g.updated_at) - EXTRACT(EPOCH FROM g.created_at) AS trm_seconds,
    d.status AS rda_status
FROM in_scope s
LEFT JOIN payment_summary ps ON ps.order_id = s.order_id
LEFT JOIN latest_payment lp ON lp.order_id = s.order_id
LEFT JOIN falcon f ON f.order_id = s.order_id
LEFT JOIN payout po ON po.transaction_id = f.transaction_id
LEFT JOIN lulu l ON l.order_id = s.order_id
LEFT JOIN rfi r ON r.order_id = s.order_id
LEFT JOIN manual_payment mp ON mp.order_id = s.order_id
LEFT JOIN checkout ck ON ck.order_id = s.order_id
LEFT JOIN fulfillment g ON g.order_id = s.order_id
LEFT JOIN rda d ON d.transaction_id = f.transaction_id
ORDER BY s.order_id
