"""The device funnel: protocol outcomes as events, folded into per-device stages, stalls and the report."""
