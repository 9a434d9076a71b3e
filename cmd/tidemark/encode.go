package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/health"
	"golang.org/x/sync/errgroup"
)

// EmbedderFlags choose the embedder; encode and search share them, so a query is embedded the
// way the catalogue was.
type EmbedderFlags struct {
	Embedder     string        `default:"hash" enum:"hash,openai" help:"Embedder: hash (offline, deterministic feature hashing) or openai (any OpenAI-compatible /embeddings endpoint)."`
	Dim          int           `default:"384" help:"Dimensions of the hash embedder."`
	EmbedModel   string        `name:"embed-model" default:"text-embedding-3-small" help:"Model for the openai embedder; stored verbatim in product_embeddings.model."`
	EmbedURL     string        `name:"embed-url" default:"https://api.openai.com/v1" help:"Base URL of the OpenAI-compatible API (POST {url}/embeddings)."`
	EmbedAPIKey  string        `name:"embed-api-key" help:"API key sent as a Bearer token when set; prefer the TIDEMARK_EMBED_API_KEY environment variable."`
	EmbedBatch   int           `name:"embed-batch" default:"128" help:"Texts per embeddings request (openai)."`
	EmbedTimeout time.Duration `name:"embed-timeout" default:"60s" help:"Timeout of one embeddings request (openai)."`
	EmbedRetries int           `name:"embed-retries" default:"8" help:"Retries of an embeddings request on 429, 5xx and timeouts, with exponential backoff and jitter (openai)."`
}

// New builds the embedder the flags ask for.
func (f *EmbedderFlags) New(log *slog.Logger) (encoder.Embedder, error) {
	switch f.Embedder {
	case "hash":
		return encoder.NewHash(f.Dim)
	case "openai":
		return encoder.NewOpenAI(encoder.OpenAIConfig{
			URL: f.EmbedURL, Model: f.EmbedModel, APIKey: f.EmbedAPIKey,
			Batch: f.EmbedBatch, Timeout: f.EmbedTimeout, Retries: f.EmbedRetries,
		}, log)
	}
	return nil, fmt.Errorf("unknown --embedder %q", f.Embedder)
}

// openStore builds the embedder and opens the vector store it searches or indexes; closeFn
// closes the store's connections.
func (f *EmbedderFlags) openStore(ctx context.Context, g *Globals, log *slog.Logger) (emb encoder.Embedder, store *encoder.Store, closeFn func(), err error) {
	if emb, err = f.New(log); err != nil {
		return nil, nil, nil, err
	}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return nil, nil, nil, err
	}
	if store, err = encoder.OpenStore(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	return emb, store, pool.Close, nil
}

// EncodeCmd is `tidemark encode`.
type EncodeCmd struct {
	EmbedderFlags `embed:""`

	Stream        string        `default:"${stream}" help:"Stream of change events."`
	Consumer      string        `default:"${consumer}" help:"Durable consumer shared by every encoder process; a new name embeds the whole stream again."`
	Workers       int           `default:"${encode_workers}" help:"Fetching workers in this process."`
	Batch         int           `default:"${encode_batch}" help:"Messages per fetch."`
	BatchWait     time.Duration `name:"batch-wait" default:"${encode_batch_wait}" help:"Longest wait to fill a batch."`
	AckWait       time.Duration `name:"ack-wait" default:"${encode_ack_wait}" help:"Time the server waits for an ack before redelivering (first delivery; later ones back off)."`
	MaxDeliver    int           `name:"max-deliver" default:"${encode_max_deliver}" help:"Deliveries of a message before it goes to the ${dlq_stream} stream."`
	MaxAckPending int           `name:"max-ack-pending" default:"${encode_max_ack_pending}" help:"Messages in flight (delivered, not acked) over all encoders."`
	ExitIdle      time.Duration `name:"exit-idle" help:"Exit (status 0) once nothing has been pending for this long; 0 runs for ever."`
	HTTPAddr      string        `name:"http-addr" default:":9465" help:"Address for /metrics, /healthz and /readyz; empty disables."`
	IndexInterval time.Duration `name:"index-interval" default:"1m" help:"How often to check the model's ANN index on every supplier partition, building the missing and rebuilding the outgrown ones (CREATE INDEX CONCURRENTLY, one at a time, while encoding goes on); 0 leaves indexes to tidemark index."`
	profileFlag
}

// Run consumes until SIGINT/SIGTERM (finishing the batch in hand) or --exit-idle.
func (c *EncodeCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	stopProfile, err := c.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	reg := newRegistry()
	enc, store, closeEnc, err := c.newEncoder(ctx, g, log, reg, "encode")
	if err != nil {
		return err
	}
	defer closeEnc()
	if c.HTTPAddr != "" {
		closeState, err := registerStateCollector(g, log, reg, health.CollectorOptions{Vectors: true, Stream: c.Stream}, c.Consumer)
		if err != nil {
			return err
		}
		defer closeState()
	}
	grp, gctx := errgroup.WithContext(ctx)
	opsCtx, stopOps := context.WithCancel(gctx)
	defer stopOps()
	grp.Go(func() error { return serveOps(opsCtx, log, c.HTTPAddr, reg, enc.Ready) })
	grp.Go(func() error {
		defer stopOps()
		return enc.Run(gctx)
	})
	if c.IndexInterval > 0 {
		emb, err := c.EmbedderFlags.New(log)
		if err != nil {
			return err
		}
		// Stopped with the encoders: a build in flight is cancelled, and the next run (or
		// tidemark index) drops what it left and builds again.
		grp.Go(func() error {
			return store.MaintainIndexes(opsCtx, emb.Model(), emb.Dim(), c.IndexInterval, log.With("component", "index"))
		})
	}
	return grp.Wait()
}
