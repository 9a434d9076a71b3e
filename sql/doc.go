// Package sql embeds tidemark's schema migrations. Files are applied in name order, each once,
// each in its own transaction; never edit one that has shipped, add a new file instead.
package sql
