package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Churn is a writer that changes one supplier's products at random, as live writers do beside
// a snapshot: every Pause a product updated (half the time: its name and price), deleted (a
// quarter) or a new one inserted (a quarter), each in its own transaction.
type Churn struct {
	Supplier int32
	Seed     uint64
	Pause    time.Duration
	// ID picks the product an update or delete goes to.
	ID func(*rand.Rand) int64
	// Touched, when set, is told the id each step picked, whatever it did.
	Touched func(id int64)
}

// Start runs the writer until stop is called, or the test ends (a test failing before it
// calls stop must not leave a writer reporting into it); a write that fails before then
// fails the test.
func (c Churn) Start(tb testing.TB, pool *pgxpool.Pool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(c.Seed, uint64(c.Supplier)))
		for i := 0; ctx.Err() == nil; i++ {
			id := c.ID(rng)
			var err error
			switch rng.IntN(4) {
			case 0, 1:
				_, err = pool.Exec(ctx, "UPDATE products SET name = name || ' (2026)', price = price + 1 WHERE supplier_id = $1 AND id = $2", c.Supplier, id)
			case 2:
				_, err = pool.Exec(ctx, "DELETE FROM products WHERE supplier_id = $1 AND id = $2", c.Supplier, id)
			case 3:
				_, err = pool.Exec(ctx, `INSERT INTO products (supplier_id, sku, name, description, price)
					VALUES ($1, $2, 'Hallo rattan chair', 'Woven by hand.', 149)`, c.Supplier, fmt.Sprint("CHURN-", i))
			}
			if err != nil && ctx.Err() == nil {
				tb.Errorf("churn of supplier %d: %v", c.Supplier, err)
				return
			}
			if c.Touched != nil {
				c.Touched(id)
			}
			time.Sleep(c.Pause)
		}
	})
	stop = func() { cancel(); wg.Wait() }
	tb.Cleanup(stop)
	return stop
}
