{#- order_states: the GOMS status and sub_state of the orders :order_ids as the warehouse knew them at
    :as_of (naive UTC), by the same rule as stuck_orders.sql: an order exists at T only if created at
    or before T; its state is the latest history row changed at or before T, else its current row
    (then `approximate` is 1 when the order changed after T). Read by the self-heal of tickets. -#}
{%- if with_history %}
WITH ranked AS (
    SELECT h.order_id, h.status, h.sub_state,
           ROW_NUMBER() OVER (PARTITION BY h.order_id
                              ORDER BY h.changed_at DESC, h.status DESC, h.sub_state DESC) AS rn
    FROM orders_goms_history h
    WHERE h.order_id IN :order_ids
      AND h.changed_at <= :as_of
)
SELECT o.order_id,
       COALESCE(r.status, o.status) AS status,
       COALESCE(r.sub_state, o.sub_state) AS sub_state,
       CASE WHEN r.order_id IS NULL AND o.updated_at > :as_of THEN 1 ELSE 0 END AS approximate
FROM orders_goms o
LEFT JOIN ranked r ON r.order_id = o.order_id AND r.rn = 1
WHERE o.order_id IN :order_ids
  AND o.created_at <= :as_of
{%- else %}
SELECT o.order_id, o.status, o.sub_state,
       CASE WHEN o.updated_at > :as_of THEN 1 ELSE 0 END AS approximate
FROM orders_goms o
WHERE o.order_id IN :order_ids
  AND o.created_at <= :as_of
{%- endif %}
