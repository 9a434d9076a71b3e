package sql

import "embed"

// Migrations holds the *.sql migration files.
//
//go:embed *.sql
var Migrations embed.FS
