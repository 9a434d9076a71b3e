package catalog

// LoadCounts is what one load did to a supplier's products, as tidemark_loads keeps it: the
// loader returns and records it, and status reads it back as the supplier's last load.
type LoadCounts struct {
	Inserted   int64 `json:"inserted"`
	Updated    int64 `json:"updated"`
	Unchanged  int64 `json:"unchanged"`
	Deleted    int64 `json:"deleted"`
	Rejected   int64 `json:"rejected"`
	Duplicates int64 `json:"duplicates"`
}
