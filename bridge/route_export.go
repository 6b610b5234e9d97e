package bridge

// ValidNode reports whether a routed node name is usable (it becomes part
// of a Redis key); Ingest records an alert routed to any other name as
// unroutable. Exported for the simulations of `medic test` and `medic
// backtest`, which route with RouteAlert and must draw the same line.
func ValidNode(n string) bool { return validNode(n) }
