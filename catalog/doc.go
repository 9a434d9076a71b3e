// Package catalog owns the database schema: it applies the embedded migrations and manages
// suppliers and their products partitions.
package catalog
