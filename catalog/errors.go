package catalog

import "errors"

// Errors of package catalog, for errors.Is.
var (
	// ErrBadSupplierID is returned for a supplier ID that is not a positive integer.
	ErrBadSupplierID = errors.New("supplier id must be a positive integer")

	// ErrNoSupplier is returned (wrapped, naming the id) for a supplier that does not exist.
	ErrNoSupplier = errors.New("no such supplier")

	// ErrNoPgvector means the pgvector layout was asked for on a server without the extension.
	ErrNoPgvector = errors.New("the pgvector extension is not installed on the PostgreSQL server " +
		"(Debian/Ubuntu: apt-get install postgresql-15-pgvector, or build it: see the README's Search section)")

	// ErrBadVectors is an unknown vector layout name.
	ErrBadVectors = errors.New("unknown vector layout: want auto, pgvector or array")
)
