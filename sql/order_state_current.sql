-- Order state when the warehouse has no orders_goms_history: the current status and sub_state.
-- Snapshots taken this way are exact only when taken live (at the tick); otherwise approximate.
order_state AS (
    SELECT order_id, current_status AS status, current_sub_state AS sub_state
    FROM window_orders
),
