{#- stuck_orders: one row per (tick, order) for every order in the triage window of each tick in
    `ticks`, as the warehouse knew it at that tick (SPEC §4, §12). A Jinja template rendered once per
    shape (number of ticks, history table or not, one order or all); every value is a bound parameter.

    Rows whose `scope` is 'candidate' are the stuck candidates, enriched from every source.
    Rows with scope 'unknown_sub_state' (a sub_state in neither list, DEC-008) or
    'out_of_scope_currency' are returned without enrichment so they can be counted and reported.

    Point in time, one rule for every source (the macro `as_of_tick` below): a source row exists at a
    tick T only if it was created at or before T; among those, the latest one touched at or before T
    wins. A row created by T but touched only after it (the warehouse keeps no older version) still
    counts with its current values, and the source's `approx_*` flag says the order's snapshot is
    approximate for that source's fields. Sources with no change time at all (Falcon's status, manual
    payments, Checkout, RDA) give their current value; it is flagged when the order itself changed
    after T (its orders_goms.updated_at), since those systems move with the order.

    Bound parameters: :as_of_<i>, :window_start_<i>, :newest_created_<i> per tick (UTC timestamps);
    :first_window_start, :last_newest_created, :last_as_of; :currencies, :statuses,
    :actionable_sub_states, :never_sub_states (expanding lists); :order_ids when one order is asked.
    Portable subset (Redshift, PostgreSQL, DuckDB): no vendor date functions, no :: casts. -#}

{%- macro as_of_tick(name, table, key, keys_from, key_from, columns, created, touched, tiebreak) -%}
{{ name }}_ranked AS (
    SELECT
        k.as_of,
        k.{{ key_from }} AS key_value,
        {%- for alias, expression in columns %}
        {{ expression }} AS {{ alias }},
        {%- endfor %}
        ROW_NUMBER() OVER (
            PARTITION BY k.as_of, k.{{ key_from }}
            ORDER BY CASE WHEN {{ touched }} <= k.as_of THEN 1 ELSE 0 END DESC, {{ touched }} DESC, {{ tiebreak }}
        ) AS rn,
        COUNT(*) OVER (PARTITION BY k.as_of, k.{{ key_from }}) AS row_count,
        MIN(CASE WHEN {{ touched }} <= k.as_of THEN 1 ELSE 0 END)
            OVER (PARTITION BY k.as_of, k.{{ key_from }}) AS all_known
    FROM {{ keys_from }} k
    JOIN {{ table }} s ON s.{{ key }} = k.{{ key_from }}
    WHERE {{ created }} <= k.as_of
),
{{ name }} AS (
    SELECT * FROM {{ name }}_ranked WHERE rn = 1
),
{%- endmacro -%}

{%- macro current_value(name, table, key, keys_from, key_from, column) -%}
{{ name }} AS (
    SELECT k.as_of, k.{{ key_from }} AS key_value, MAX(s.{{ column }}) AS {{ column }}
    FROM {{ keys_from }} k
    JOIN {{ table }} s ON s.{{ key }} = k.{{ key_from }}
    GROUP BY k.as_of, k.{{ key_from }}
),
{%- endmacro -%}

WITH ticks AS (
    {%- for i in range(n_ticks) %}
    SELECT CAST(:as_of_{{ i }} AS TIMESTAMP) AS as_of,
           CAST(:window_start_{{ i }} AS TIMESTAMP) AS window_start,
           CAST(:newest_created_{{ i }} AS TIMESTAMP) AS newest_created
    {%- if not loop.last %}
    UNION ALL
    {%- endif %}
    {%- endfor %}
),

order_rows AS (
    SELECT
        o.order_id,
        o.owner_id,
        UPPER(TRIM(o.meta_postscript_pricing_info_send_currency)) AS currency,
        o.meta_postscript_pricing_info_send_amount AS send_amount,
        o.meta_postscript_pricing_info_receive_amount AS receive_amount,
        o.meta_postscript_acquirer AS acquirer,
        o.created_at,
        o.updated_at,
        o.status AS current_status,
        o.sub_state AS current_sub_state
    FROM orders_goms o
    WHERE o.created_at >= :first_window_start
      AND o.created_at <= :last_newest_created
      {%- if one_order %}
      AND o.order_id IN :order_ids
      {%- endif %}
),

-- Each order's states as intervals [valid_from, valid_to). From orders_goms_history when the
-- warehouse has it; an order without history holds its current state since its creation, which
-- is known only up to its last update.
{%- if with_history %}
state_changes AS (
    SELECT
        h.order_id,
        h.status,
        h.sub_state,
        h.changed_at AS valid_from,
        LEAD(h.changed_at) OVER (PARTITION BY h.order_id ORDER BY h.changed_at, h.status, h.sub_state) AS valid_to
    FROM orders_goms_history h
    JOIN order_rows o ON o.order_id = h.order_id
    WHERE h.changed_at <= :last_as_of
),

state_intervals AS (
    SELECT order_id, status, sub_state, valid_from, valid_to, 0 AS from_current
    FROM state_changes
    UNION ALL
    SELECT o.order_id, o.current_status, o.current_sub_state, o.created_at, NULL, 1
    FROM order_rows o
    WHERE NOT EXISTS (SELECT 1 FROM orders_goms_history h WHERE h.order_id = o.order_id)
),
{%- else %}
state_intervals AS (
    SELECT order_id, current_status AS status, current_sub_state AS sub_state, created_at AS valid_from,
           CAST(NULL AS TIMESTAMP) AS valid_to, 1 AS from_current
    FROM order_rows
),
{%- endif %}

-- (tick, order) for every order in a stuck status at the tick and inside that tick's window.
order_ticks AS (
    SELECT
        t.as_of,
        o.order_id, o.owner_id, o.currency, o.send_amount, o.receive_amount, o.acquirer,
        o.created_at, o.updated_at,
        s.status,
        s.sub_state,
        CASE WHEN s.from_current = 1 AND o.updated_at > t.as_of THEN 1 ELSE 0 END AS approx_order_state
    FROM state_intervals s
    JOIN order_rows o ON o.order_id = s.order_id
    JOIN ticks t
      ON s.valid_from <= t.as_of
     AND (s.valid_to IS NULL OR s.valid_to > t.as_of)
     AND o.created_at >= t.window_start
     AND o.created_at <= t.newest_created
    WHERE s.status IN :statuses
      AND (s.sub_state IS NULL OR s.sub_state NOT IN :never_sub_states)
),

in_scope AS (
    SELECT
        order_ticks.*,
        CASE
            WHEN sub_state IN :actionable_sub_states AND currency IN :currencies THEN 'candidate'
            WHEN sub_state IN :actionable_sub_states THEN 'out_of_scope_currency'
            ELSE 'unknown_sub_state'
        END AS scope
    FROM order_ticks
),

candidates AS (
    SELECT as_of, order_id, updated_at FROM in_scope WHERE scope = 'candidate'
),

{{ as_of_tick("payment", "payments_goms", "reference_id", "candidates", "order_id",
              [("payment_status", "s.payment_status")],
              "s.created_at", "COALESCE(s.updated_at, s.created_at)", "s.payment_status") }}

payment_summary AS (
    SELECT
        as_of,
        key_value,
        COUNT(*) AS payment_attempts,
        MAX(CASE WHEN payment_status = 'COMPLETED' THEN 1 ELSE 0 END) AS completed_payments
    FROM payment_ranked
    GROUP BY as_of, key_value
),

{{ as_of_tick("falcon", "falcon_transactions_v2", "client_txn_id", "candidates", "order_id",
              [("transaction_id", "s.transaction_id"), ("status", "s.status")],
              "s.created_at", "s.created_at", "s.transaction_id DESC, s.status") }}

falcon_keys AS (
    SELECT f.as_of, f.transaction_id, c.updated_at
    FROM falcon f
    JOIN candidates c ON c.as_of = f.as_of AND c.order_id = f.key_value
),

{{ as_of_tick("payout", "transaction_payout", "transaction_id", "falcon_keys", "transaction_id",
              [("status", "s.status"), ("payout_partner", "s.payout_partner")],
              "s.created_at", "COALESCE(s.updated_at, s.created_at)", "s.status") }}

{{ as_of_tick("lulu", "lulu_data", "order_id", "candidates", "order_id",
              [("sub_status", "s.sub_status"), ("status", "s.status"), ("lulu_client", "s.lulu_client")],
              "s.created_at", "COALESCE(s.updated_at, s.created_at)", "s.sub_status") }}

{{ as_of_tick("rfi", "transfer_rfi", "reference_id", "candidates", "order_id",
              [("status", "s.status"), ("rfitype", "s.rfitype"), ("created_at", "s.created_at"),
               ("modified_at", "s.modified_at")],
              "s.created_at", "COALESCE(s.modified_at, s.created_at)", "s.status") }}

{{ as_of_tick("fulfillment", "fulfillments_goms", "order_id", "candidates", "order_id",
              [("created_at", "s.created_at"), ("updated_at", "s.updated_at")],
              "s.created_at", "COALESCE(s.updated_at, s.created_at)", "s.created_at") }}

{{ current_value("manual_payment", "uae_manual_payments", "order_id", "candidates", "order_id", "status") }}

{{ current_value("checkout", "checkout_payment_data", "order_id", "candidates", "order_id", "status") }}

{{ current_value("rda", "rda_fulfillments", "order_id", "falcon_keys", "transaction_id", "status") }}

final AS (
    SELECT
        s.as_of,
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
        CASE WHEN l.key_value IS NOT NULL THEN TRUE ELSE FALSE END AS has_lulu,
        l.sub_status AS lulu_status,
        l.status AS lulu_main_status,
        l.lulu_client,
        CASE WHEN po.key_value IS NOT NULL THEN TRUE ELSE FALSE END AS has_payout,
        po.status AS payout_status,
        po.payout_partner,
        CASE WHEN r.key_value IS NOT NULL THEN TRUE ELSE FALSE END AS has_rfi,
        r.status AS rfi_status,
        r.rfitype AS rfi_type,
        r.created_at AS rfi_created_at,
        r.modified_at AS rfi_modified_at,
        mp.status AS manual_payment_status,
        ck.status AS checkout_status,
        CASE WHEN g.key_value IS NOT NULL THEN TRUE ELSE FALSE END AS has_trm,
        EXTRACT(EPOCH FROM g.updated_at) - EXTRACT(EPOCH FROM g.created_at) AS trm_seconds,
        d.status AS rda_status,
        -- Which sources are known only approximately at the tick (see the header).
        s.approx_order_state,
        CASE WHEN lp.all_known = 0 THEN 1 ELSE 0 END AS approx_payment,
        CASE WHEN f.key_value IS NOT NULL AND s.updated_at > s.as_of THEN 1 ELSE 0 END AS approx_falcon,
        CASE WHEN po.all_known = 0 THEN 1 ELSE 0 END AS approx_payout,
        CASE WHEN l.all_known = 0 THEN 1 ELSE 0 END AS approx_lulu,
        CASE WHEN r.all_known = 0 THEN 1 ELSE 0 END AS approx_rfi,
        CASE WHEN g.all_known = 0 THEN 1 ELSE 0 END AS approx_trm,
        CASE WHEN mp.key_value IS NOT NULL AND s.updated_at > s.as_of THEN 1 ELSE 0 END AS approx_manual_payment,
        CASE WHEN ck.key_value IS NOT NULL AND s.updated_at > s.as_of THEN 1 ELSE 0 END AS approx_checkout,
        CASE WHEN d.key_value IS NOT NULL AND s.updated_at > s.as_of THEN 1 ELSE 0 END AS approx_rda
    FROM in_scope s
    LEFT JOIN payment_summary ps ON ps.as_of = s.as_of AND ps.key_value = s.order_id
    LEFT JOIN payment lp ON lp.as_of = s.as_of AND lp.key_value = s.order_id
    LEFT JOIN falcon f ON f.as_of = s.as_of AND f.key_value = s.order_id
    LEFT JOIN payout po ON po.as_of = s.as_of AND po.key_value = f.transaction_id
    LEFT JOIN lulu l ON l.as_of = s.as_of AND l.key_value = s.order_id
    LEFT JOIN rfi r ON r.as_of = s.as_of AND r.key_value = s.order_id
    LEFT JOIN manual_payment mp ON mp.as_of = s.as_of AND mp.key_value = s.order_id
    LEFT JOIN checkout ck ON ck.as_of = s.as_of AND ck.key_value = s.order_id
    LEFT JOIN fulfillment g ON g.as_of = s.as_of AND g.key_value = s.order_id
    LEFT JOIN rda d ON d.as_of = s.as_of AND d.key_value = f.transaction_id
)

SELECT * FROM final
ORDER BY as_of, order_id
