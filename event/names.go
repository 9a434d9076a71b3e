package event

// Where tidemark publishes its events: a subscriber reads the stream, or subscribes to the
// subjects <SubjectPrefix>.<supplier_id>.<op> (products.42.update; truncates of the whole table
// on products.all.truncate).
const (
	// Stream is the JetStream stream of product changes (the default of every --stream).
	Stream = "PRODUCTS"
	// SubjectPrefix is the first token of every subject of Stream.
	SubjectPrefix = "products"
)
