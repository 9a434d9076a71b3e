package encoder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// OpenAIConfig configures an [OpenAI] embedder.
type OpenAIConfig struct {
	URL    string // base URL; requests go to URL + "/embeddings"
	Model  string // sent as "model" and stored verbatim as the vectors' model
	APIKey string // sent as a Bearer token when not empty
	Batch  int    // texts per request; default 128
	// Timeout bounds one request; default 60s.
	Timeout time.Duration
	// Retries bounds the attempts after the first one for 429, 5xx and timeouts; default 8.
	Retries int
	// MinBackoff and MaxBackoff bound the exponential backoff (full jitter); defaults 500ms, 30s.
	MinBackoff, MaxBackoff time.Duration
	Client                 *http.Client // default: a client with Timeout
}

// OpenAI embeds through any OpenAI-compatible POST /embeddings endpoint.
type OpenAI struct {
	cfg OpenAIConfig
	log *slog.Logger
}

var _ Embedder = (*OpenAI)(nil)

// NewOpenAI returns an OpenAI-compatible embedder.
func NewOpenAI(cfg OpenAIConfig, log *slog.Logger) (*OpenAI, error) {
	if cfg.URL == "" {
		return nil, errors.New("openai embedder: --embed-url is empty")
	}
	if cfg.Model == "" {
		return nil, errors.New("openai embedder: --embed-model is empty")
	}
	switch {
	case cfg.Batch < 0:
		return nil, fmt.Errorf("openai embedder: --embed-batch %d is negative", cfg.Batch)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("openai embedder: --embed-timeout %s is negative", cfg.Timeout)
	case cfg.Retries < 0:
		return nil, fmt.Errorf("openai embedder: --embed-retries %d is negative", cfg.Retries)
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	if cfg.Batch == 0 {
		cfg.Batch = 128
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 8
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &OpenAI{cfg: cfg, log: log}, nil
}

// Model is --embed-model, verbatim.
func (o *OpenAI) Model() string { return o.cfg.Model }

// Dim is 0: the endpoint decides, and each vector's length is stored with it.
func (o *OpenAI) Dim() int { return 0 }

type embedRequest struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

type embedResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// Embed sends the texts in batches of Batch, retrying each batch on 429, 5xx and timeouts.
// Vectors are L2-normalised, whatever the endpoint returns.
func (o *OpenAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for start := 0; start < len(texts); start += o.cfg.Batch {
		part := texts[start:min(start+o.cfg.Batch, len(texts))]
		vecs, err := o.embedRetrying(ctx, part)
		if err != nil {
			return nil, err
		}
		out = append(out, vecs...)
	}
	return out, nil
}

// errEmbedRejected is the endpoint refusing a request (4xx other than 429): retrying the
// same texts will not help.
var errEmbedRejected = errors.New("embeddings request rejected")

// retryable is an error worth another attempt; after is the server's Retry-After, if any.
type retryable struct {
	err   error
	after time.Duration
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

func (o *OpenAI) embedRetrying(ctx context.Context, texts []string) ([][]float32, error) {
	for attempt := 0; ; attempt++ {
		vecs, err := o.post(ctx, texts)
		if err == nil {
			return vecs, nil
		}
		var r *retryable
		if !errors.As(err, &r) || attempt >= o.cfg.Retries || ctx.Err() != nil {
			return nil, err
		}
		// Full jitter: a crowd of encoders throttled together does not come back together.
		ceiling := min(o.cfg.MaxBackoff, o.cfg.MinBackoff<<min(attempt, 20))
		wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
		if r.after > wait {
			wait = r.after
		}
		o.log.Warn("embedding request failed; retrying", "err", err, "attempt", attempt+1, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (o *OpenAI) post(ctx context.Context, texts []string) ([][]float32, error) {
	body, err := json.Marshal(embedRequest{Model: o.cfg.Model, Input: texts})
	if err != nil {
		return nil, fmt.Errorf("encode embedding request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.cfg.URL+"/embeddings", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("embedding request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.cfg.APIKey)
	}
	resp, err := o.cfg.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Timeouts, refused and reset connections: the endpoint may well come back.
		return nil, &retryable{err: fmt.Errorf("post embeddings: %w", err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, &retryable{err: fmt.Errorf("read embeddings response: %w", err)}
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return nil, &retryable{err: fmt.Errorf("embeddings: %s", resp.Status), after: retryAfter(resp.Header.Get("Retry-After"))}
	case resp.StatusCode >= 500:
		return nil, &retryable{err: fmt.Errorf("embeddings: %s: %s", resp.Status, snippet(data))}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: %s: %s", errEmbedRejected, resp.Status, snippet(data))
	}
	var er embedResponse
	if err := json.Unmarshal(data, &er); err != nil {
		return nil, fmt.Errorf("decode embeddings response: %w", err)
	}
	if len(er.Data) != len(texts) {
		return nil, fmt.Errorf("embeddings: got %d vectors for %d texts", len(er.Data), len(texts))
	}
	out := make([][]float32, len(texts))
	for _, d := range er.Data {
		if d.Index < 0 || d.Index >= len(texts) || out[d.Index] != nil {
			return nil, fmt.Errorf("embeddings: bad or repeated index %d", d.Index)
		}
		if len(d.Embedding) == 0 {
			return nil, fmt.Errorf("embeddings: empty vector at index %d", d.Index)
		}
		normalize(d.Embedding)
		out[d.Index] = d.Embedding
	}
	return out, nil
}

// retryAfter parses a Retry-After header: delta-seconds or an HTTP date. It caps the wait at
// five minutes so a wild header cannot park an encoder for ever.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseFloat(strings.TrimSpace(h), 64); err == nil && s >= 0 {
		d = time.Duration(s * float64(time.Second))
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	return max(0, min(d, 5*time.Minute))
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
