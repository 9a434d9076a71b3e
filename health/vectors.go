package health

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/encoder"
)

// ScanSecondsPerMillion is what a search that reads every vector costs per million 384-dim
// real[] vectors streamed to the client, measured on 2 cores (34–37 s for `tidemark search` at
// a million, README: Search).
const ScanSecondsPerMillion = 35

// IndexOf summarises model's ANN index (planner estimates, no table scan).
func IndexOf(ctx context.Context, store *encoder.Store, model string) (*IndexSummary, error) {
	if !store.Vector() {
		return &IndexSummary{State: "unavailable"}, nil
	}
	dim, err := store.ModelDim(ctx, model)
	if err != nil {
		// Only tombstones: nothing to index or search.
		return &IndexSummary{State: string(encoder.IndexBuilt)}, nil
	}
	mi, err := store.Index(ctx, model, dim, false)
	if err != nil {
		return nil, err
	}
	sum := &IndexSummary{State: string(mi.State), Dim: dim, Partitions: len(mi.Partitions)}
	for _, p := range mi.Partitions {
		sum.Bytes += p.Bytes
		switch p.State {
		case encoder.IndexBuilt:
			sum.Built++
		case encoder.IndexBuilding:
			sum.Building++
			sum.Progress = append(sum.Progress, fmt.Sprintf("supplier %d: %s", p.Supplier, p.Progress))
		case encoder.IndexMissing, encoder.IndexInvalid:
			sum.Missing++
		case encoder.IndexSmall:
			sum.Small++
		}
	}
	return sum, nil
}

// Describe is the summary on one line, for status.
func (s *IndexSummary) Describe() string {
	switch s.State {
	case "unavailable":
		return "no index (real[]: searches scan)"
	case string(encoder.IndexBuilding):
		return fmt.Sprintf("index building (%s)", strings.Join(s.Progress, ", "))
	case string(encoder.IndexMissing):
		return fmt.Sprintf("index missing on %d of %d partitions (searches scan them: tidemark index)", s.Missing, s.Partitions)
	}
	if s.Built == 0 {
		return "no index needed yet (every partition is small)"
	}
	return fmt.Sprintf("index built (%d of %d partitions, %s)", s.Built, s.Partitions, FormatBytes(s.Bytes))
}

// vectorChecks warns when a search would read every vector: the vectors are real[], or a
// model's index is missing on a partition big enough to need one.
func vectorChecks(ctx context.Context, db *pgxpool.Pool) []Check {
	l, err := catalog.ReadVectorLayout(ctx, db)
	if err != nil {
		return []Check{queryFailed("vectors", err)}
	}
	if l.Column == "" {
		return nil
	}
	if !l.Pgvector() {
		fix := "install pgvector on the server (README: Search), then tidemark migrate --vectors pgvector"
		if l.Available {
			fix = "tidemark migrate --vectors pgvector (pgvector is installed on the server)"
		}
		return []Check{warn("vectors", fix,
			"stored as real[]: every search reads every vector (about %d s per million on 2 cores)", ScanSecondsPerMillion)}
	}
	store, err := encoder.OpenStore(ctx, db)
	if errors.Is(err, encoder.ErrNotMigrated) {
		return nil
	}
	if err != nil {
		return []Check{queryFailed("vectors", err)}
	}
	models, err := store.Models(ctx)
	if err != nil {
		return []Check{queryFailed("vectors", err)}
	}
	var out []Check
	for _, m := range models {
		idx, err := IndexOf(ctx, store, m)
		if err != nil {
			return append(out, queryFailed("vectors", err))
		}
		name := "vectors " + m
		switch idx.State {
		case string(encoder.IndexMissing):
			out = append(out, warn(name, fmt.Sprintf("tidemark index --model %s (or let tidemark encode build it)", m),
				"%d of %d supplier partitions have no index: searches read all their vectors (about %d s per million)",
				idx.Missing, idx.Partitions, ScanSecondsPerMillion))
		default:
			out = append(out, ok(name, "%s", idx.Describe()))
		}
	}
	if len(out) == 0 {
		out = append(out, ok("vectors", "pgvector, no vectors yet"))
	}
	return out
}
