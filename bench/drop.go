package main

import (
	"context"
	"fmt"
	"iter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tidemark/tidemark/internal/fakedrop"
)

// benchSeed seeds every stage's products: runs compare because they load the same bytes.
const benchSeed = 1

// benchDrop generates the products of supplier id (1-based), the trades taken in turn.
func benchDrop(id int32) *fakedrop.Drop {
	return fakedrop.New(fakedrop.Suppliers[int(id-1)%len(fakedrop.Suppliers)], benchSeed)
}

// benchData describes the stages' rows, for the results.
const benchData = "internal/fakedrop seed 1: ~500-byte CSV rows, 3-5 word names, 40-60 word descriptions with punctuation and non-ASCII, small attributes objects"

// productColumns are the columns copyProducts fills.
var productColumns = []string{"supplier_id", "sku", "name", "description", "price", "currency", "status", "attributes"}

// copyProducts COPYs products into supplier's partition in one statement (one transaction),
// as a stage's starting data: the rows and their WAL are those of a real drop, without paying
// for tidemark load.
func copyProducts(ctx context.Context, db interface {
	CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error)
}, supplier int32, products iter.Seq[fakedrop.Product]) (int64, error) {
	next, stop := iter.Pull(products)
	defer stop()
	row := make([]any, len(productColumns))
	n, err := db.CopyFrom(ctx, pgx.Identifier{"products"}, productColumns, pgx.CopyFromFunc(func() ([]any, error) {
		p, ok := next()
		if !ok {
			return nil, nil
		}
		var price pgtype.Numeric
		if err := price.Scan(p.Price); err != nil {
			return nil, fmt.Errorf("price %q: %w", p.Price, err)
		}
		row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] = supplier, p.SKU, p.Name, p.Description, price, p.Currency, p.Status, string(p.Attributes.AppendJSON(nil))
		return row, nil
	}))
	if err != nil {
		return n, fmt.Errorf("copy products: %w", err)
	}
	return n, nil
}
