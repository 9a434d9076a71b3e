package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
)

// CollectorOptions say what a [Collector] exports.
type CollectorOptions struct {
	// Vectors exports tidemark_vectors (encode exports it).
	Vectors bool
	// Snapshots exports the snapshot gauges and the products estimate (replicate exports them).
	Snapshots bool
	// JS, Stream and Consumer name the encoders' consumer, whose update and delete events not
	// yet applied are tidemark_vectors{state="stale"}. A nil JS exports no stale series.
	JS       jetstream.JetStream
	Stream   string
	Consumer string
	// Timeout bounds one scrape's queries; default 5s.
	Timeout time.Duration
}

// Collector is a prometheus.Collector that reads, at each scrape, what the database and the
// stream say about the catalogue, with the same queries as `tidemark status`: none of them
// reads products or product_embeddings row by row, so a scrape costs a few milliseconds
// whatever the catalogue's size.
type Collector struct {
	pool *pgxpool.Pool
	opts CollectorOptions
	log  *slog.Logger

	up, vectors, products, running, rows, rowsTotal *prometheus.Desc
}

// NewCollector builds a collector on pool; register it with the process's registry.
func NewCollector(pool *pgxpool.Pool, opts CollectorOptions, log *slog.Logger) *Collector {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Stream == "" {
		opts.Stream = event.Stream
	}
	return &Collector{
		pool: pool, opts: opts, log: log,
		up: prometheus.NewDesc("tidemark_state_scrape_success",
			"1 when the last scrape read the database (and the stream, for stale vectors), else 0.", nil, nil),
		vectors: prometheus.NewDesc("tidemark_vectors",
			"Vectors by model and state: live and deleted (tombstones) are exact; missing is products without a live vector, "+
				"estimated from table statistics; stale is update and delete events the encoders' consumer has not applied.",
			[]string{"model", "state"}, nil),
		products: prometheus.NewDesc("tidemark_products_estimate",
			"Products, summed over the supplier partitions' statistics (an estimate).", nil, nil),
		running: prometheus.NewDesc("tidemark_snapshots_running",
			"Snapshots started and not finished (tidemark_snapshots).", nil, nil),
		rows: prometheus.NewDesc("tidemark_snapshot_rows",
			"Rows the running snapshots have read so far.", nil, nil),
		rowsTotal: prometheus.NewDesc("tidemark_snapshot_rows_estimate",
			"Products of the suppliers being snapshotted (an estimate): rows / this is the progress.", nil, nil),
	}
}

// Describe sends the descriptors of every metric the collector may export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	if c.opts.Vectors {
		ch <- c.vectors
	}
	if c.opts.Snapshots {
		ch <- c.products
		ch <- c.running
		ch <- c.rows
		ch <- c.rowsTotal
	}
}

// Collect reads the state and sends it; a failed read exports only
// tidemark_state_scrape_success 0 (and what was read before it).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	err := c.collect(ctx, ch)
	ok := 1.0
	if err != nil {
		ok = 0
		c.log.Warn("read the catalogue's state for /metrics", "err", err)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, ok)
}

func (c *Collector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	st := NewStatus()
	if err := GatherSuppliers(ctx, c.pool, 0, st); err != nil {
		return err
	}
	if c.opts.Snapshots {
		if err := c.collectSnapshots(ctx, ch, st.Suppliers); err != nil {
			return err
		}
	}
	if !c.opts.Vectors {
		return nil
	}
	type sums struct{ live, deleted, missing float64 }
	byModel := map[string]*sums{}
	var models []string
	for _, s := range st.Suppliers {
		for _, v := range s.Vectors {
			m := byModel[v.Model]
			if m == nil {
				m = &sums{}
				byModel[v.Model] = m
				models = append(models, v.Model)
			}
			m.live += float64(v.Live)
			m.deleted += float64(v.Deleted)
			m.missing += float64(v.Missing)
		}
	}
	var stale *int64
	if c.opts.JS != nil {
		n, err := PendingChanges(ctx, c.opts.JS, c.opts.Stream, c.opts.Consumer)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound):
			// Not yet: encode creates its consumer once replicate has created the stream.
		case err != nil:
			return err
		default:
			stale = &n
		}
	}
	for _, model := range models {
		m := byModel[model]
		ch <- prometheus.MustNewConstMetric(c.vectors, prometheus.GaugeValue, m.live, model, "live")
		ch <- prometheus.MustNewConstMetric(c.vectors, prometheus.GaugeValue, m.deleted, model, "deleted")
		ch <- prometheus.MustNewConstMetric(c.vectors, prometheus.GaugeValue, m.missing, model, "missing")
		if stale != nil {
			// The consumer serves one model; with several models, each encoder exports its own.
			ch <- prometheus.MustNewConstMetric(c.vectors, prometheus.GaugeValue, float64(*stale), model, "stale")
		}
	}
	return nil
}

func (c *Collector) collectSnapshots(ctx context.Context, ch chan<- prometheus.Metric, sups []SupplierStatus) error {
	var products, running, rows, total float64
	for _, s := range sups {
		products += float64(s.Products)
		if sn := s.LastSnapshot; sn != nil && sn.Finished == nil {
			running++
			rows += float64(sn.Rows)
			total += float64(s.Products)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.products, prometheus.GaugeValue, products)
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, running)
	ch <- prometheus.MustNewConstMetric(c.rows, prometheus.GaugeValue, rows)
	ch <- prometheus.MustNewConstMetric(c.rowsTotal, prometheus.GaugeValue, total)
	return nil
}

// PendingChanges counts the update and delete events of every supplier in the stream that
// consumer has not acknowledged yet (0 when it is caught up).
func PendingChanges(ctx context.Context, js jetstream.JetStream, stream, consumer string) (int64, error) {
	cons, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		return 0, fmt.Errorf("consumer %s of %s: %w", consumer, stream, err)
	}
	info := cons.CachedInfo()
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return 0, nil
	}
	return countPending(ctx, js, stream, info.AckFloor.Stream+1, "*")
}
