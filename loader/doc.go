// Package loader bulk-loads supplier drops (CSV, NDJSON or XLSX, maybe gzipped, read the way
// the supplier's drop profile says) into the products table in one transaction: it reads and
// validates records as a stream and COPYs them straight into an empty partition, or into a
// temporary staging table applied with one set-based MERGE, so unchanged rows are not written
// at all.
package loader
