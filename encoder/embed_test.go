package encoder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/fakedrop"
)

func TestHashEmbedder(t *testing.T) {
	h := hashEmbedder(t)
	ctx := context.Background()
	texts := []string{
		"Red wool scarf, knitted",
		"RED   wool-scarf; KNITTED!",
		"Red wool socks",
		"Stainless steel chef knife",
		"Crème brûlée torch",
		"CRÈME BRÛLÉE TORCH",
		"",
	}
	vs, err := h.Embed(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := h.Embed(ctx, texts)
	for i, v := range vs {
		if len(v) != encoder.DefaultDim {
			t.Fatalf("text %d: dim %d", i, len(v))
		}
		for j := range v {
			if v[j] != again[i][j] {
				t.Fatalf("text %d: not deterministic", i)
			}
		}
		var n float64
		for _, x := range v {
			n += float64(x) * float64(x)
		}
		if texts[i] == "" {
			if n != 0 {
				t.Fatalf("empty text: norm %v", n)
			}
			continue
		}
		if math.Abs(n-1) > 1e-5 {
			t.Fatalf("text %d: squared norm %v, want 1", i, n)
		}
	}
	cos := func(a, b []float32) float64 {
		var s float64
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		return s
	}
	if c := cos(vs[0], vs[1]); c < 0.9999 {
		t.Fatalf("case and punctuation changed the vector: cos %v", c)
	}
	if c := cos(vs[4], vs[5]); c < 0.9999 {
		t.Fatalf("Unicode case changed the vector: cos %v", c)
	}
	if near, far := cos(vs[0], vs[2]), cos(vs[0], vs[3]); near <= far || near < 0.2 {
		t.Fatalf("sharing words is not nearer: scarf~socks %v, scarf~knife %v", near, far)
	}
	if _, err := encoder.NewHash(0); err == nil {
		t.Fatal("dimension 0 accepted")
	}
}

func TestText(t *testing.T) {
	got := encoder.Text(" Lamp ", "Bright.", json.RawMessage(`{"color":"red","tags":["desk","led",3],"weight_g":120,"brand":null,"material":{"x":1}}`))
	if want := "Lamp\nBright.\ncolor: red\ntags: desk, led, 3"; got != want {
		t.Fatalf("Text = %q, want %q", got, want)
	}
	if got := encoder.Text("Lamp", "", json.RawMessage(`not json`)); got != "Lamp" {
		t.Fatalf("Text with bad attributes = %q", got)
	}
}

func BenchmarkHashEmbedder(b *testing.B) {
	h, _ := encoder.NewHash(encoder.DefaultDim)
	// The texts of generated products (internal/fakedrop), as the encoder builds them: a
	// name, a 40-60-word description and the embedded attributes, about 400 bytes.
	drop := fakedrop.New(fakedrop.Suppliers[0], 1)
	texts := make([]string, 256)
	for i := range texts {
		p := drop.Product(i)
		attrs, err := json.Marshal(p.Attributes)
		if err != nil {
			b.Fatal(err)
		}
		texts[i] = encoder.Text(p.Name, p.Description, attrs)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Embed(ctx, texts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(texts))/b.Elapsed().Seconds(), "texts/s")
}

// fakeOpenAI is an OpenAI-compatible /embeddings endpoint backed by the hash embedder, which
// throttles and fails now and then, and rejects texts containing "cursed".
type fakeOpenAI struct {
	mu       sync.Mutex
	calls    int
	throttle int // answer 429 to every throttle-th call
	fail     int // answer 500 to every fail-th call
	auth     []string
	hash     *encoder.Hash
	delay    time.Duration // before answering, or until the client goes away
	rejected int           // requests refused for a cursed text
	texts    int           // texts received, counted before the delay
	started  chan struct{} // closed on the first request
	once     sync.Once
}

func (f *fakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if r.URL.Path != "/v1/embeddings" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "test-model" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.texts += len(req.Input)
	f.mu.Unlock()
	f.once.Do(func() { close(f.started) })
	select {
	case <-time.After(f.delay):
	case <-r.Context().Done(): // a killed client; the server's Close waits for this handler
		return
	}
	switch {
	case f.throttle > 0 && n%f.throttle == 0:
		w.Header().Set("Retry-After", "0.05")
		http.Error(w, `{"error":"rate limited"}`, http.StatusTooManyRequests)
		return
	case f.fail > 0 && n%f.fail == 0:
		http.Error(w, `{"error":"upstream"}`, http.StatusInternalServerError)
		return
	}
	for _, s := range req.Input {
		if strings.Contains(s, "cursed") {
			f.mu.Lock()
			f.rejected++
			f.mu.Unlock()
			http.Error(w, `{"error":"content policy"}`, http.StatusBadRequest)
			return
		}
	}
	vecs, _ := f.hash.Embed(r.Context(), req.Input)
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	resp := struct {
		Object string `json:"object"`
		Data   []item `json:"data"`
		Model  string `json:"model"`
	}{Object: "list", Model: req.Model}
	// Out of order on purpose: clients must go by index.
	for i := len(vecs) - 1; i >= 0; i-- {
		v := vecs[i]
		for j := range v {
			v[j] *= 3 // not normalised on purpose
		}
		resp.Data = append(resp.Data, item{Object: "embedding", Index: i, Embedding: v})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// received counts the texts sent to it so far.
func (f *fakeOpenAI) received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.texts
}

// rejections counts the requests refused for a cursed text.
func (f *fakeOpenAI) rejections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

func newFakeOpenAI(t *testing.T, throttle, fail int) (*fakeOpenAI, string) {
	f := &fakeOpenAI{throttle: throttle, fail: fail, hash: hashEmbedder(t), started: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + "/v1"
}

func openAIEmbedder(t *testing.T, url, key string) *encoder.OpenAI {
	emb, err := encoder.NewOpenAI(encoder.OpenAIConfig{
		URL: url, Model: "test-model", APIKey: key, Batch: 7,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Retries: 20,
	}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return emb
}

func TestOpenAIEncoderSurvivesThrottlingAndErrors(t *testing.T) {
	e := newEnv(t)
	fake, url := newFakeOpenAI(t, 3, 4)
	emb := openAIEmbedder(t, url, "")
	r := e.start(encoder.Config{Batch: 40}, emb)
	for i := range 60 {
		e.insert(int64(1+i%2), fmt.Sprintf("O-%d", i), fmt.Sprintf("Thing %d", i), "Described.")
	}
	eventually(t, 2*time.Minute, func() string { return e.converged("test-model") })
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.calls < 12 {
		t.Fatalf("only %d calls: the throttling and failures were not exercised", fake.calls)
	}
	for _, a := range fake.auth {
		if a != "" {
			t.Fatalf("sent Authorization %q without a key", a)
		}
	}
	if got := r.texts(); got < 60 {
		t.Fatalf("embedded %v texts", got)
	}
	// The model is stored verbatim and the vectors normalised.
	var n int
	var norm float64
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*), max((SELECT sum(x*x) FROM unnest(embedding::real[]) x))
		FROM product_embeddings WHERE model = 'test-model'`).Scan(&n, &norm); err != nil {
		t.Fatal(err)
	}
	if n != 60 || math.Abs(norm-1) > 1e-4 {
		t.Fatalf("%d vectors, max squared norm %v", n, norm)
	}
}

func TestOpenAIEmbedderSendsKey(t *testing.T) {
	fake, url := newFakeOpenAI(t, 0, 0)
	emb := openAIEmbedder(t, url, "sk-test")
	vs, err := emb.Embed(context.Background(), []string{"a b", "c d"})
	if err != nil || len(vs) != 2 {
		t.Fatalf("embed: %v, %d vectors", err, len(vs))
	}
	if fake.auth[0] != "Bearer sk-test" {
		t.Fatalf("Authorization %q", fake.auth[0])
	}
	// 4xx other than 429 is final.
	if _, err := emb.Embed(context.Background(), []string{"cursed"}); err == nil {
		t.Fatal("a 400 was not an error")
	}
}

func TestMaxDeliverGoesToDLQ(t *testing.T) {
	t.Parallel() // waits on redeliveries and subprocesses, with servers of its own
	e := newEnv(t)
	_, url := newFakeOpenAI(t, 0, 0)
	emb := openAIEmbedder(t, url, "")
	r := e.start(encoder.Config{MaxDeliver: 3, AckWait: 5 * time.Second}, emb)
	bad := e.insert(1, "Z-1", "A cursed amulet", "Nobody can embed this.")
	for i := range 5 {
		e.insert(1, fmt.Sprintf("Z-%d", i+2), fmt.Sprintf("Fine thing %d", i), "Nothing wrong.")
	}
	eventually(t, 2*time.Minute, func() string {
		if r.events("dead_lettered") < 1 {
			return "nothing dead-lettered yet"
		}
		return ""
	})
	m := e.deadLetter(1)
	if m.Header.Get(encoder.HeaderDeliveries) != "3" || !strings.Contains(m.Header.Get(encoder.HeaderError), "rejected") {
		t.Fatalf("dead letter headers: %v", m.Header)
	}
	if id := deadLetteredID(m); id != bad.key.ID {
		t.Fatalf("dead-lettered product %d, want %d", id, bad.key.ID)
	}
	vs := e.vectors("test-model")
	if len(vs) != 5 {
		t.Fatalf("%d vectors, want the 5 fine products", len(vs))
	}
}

// TestDeadLetterFailureLosesNothing: an event that has used up its deliveries while the
// dead-letter stream cannot be written is neither dropped nor terminated: it keeps being
// delivered, and lands in the dead-letter stream once that can be written again.
func TestDeadLetterFailureLosesNothing(t *testing.T) {
	t.Parallel() // waits on redeliveries and subprocesses, with servers of its own
	e := newEnv(t)
	// A stream already owning the dead-letter subjects: creating PRODUCTS_DLQ fails.
	if _, err := e.js.CreateStream(e.ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"products_dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	fake, url := newFakeOpenAI(t, 0, 0)
	emb := openAIEmbedder(t, url, "")
	r := e.start(encoder.Config{MaxDeliver: 2, AckWait: 5 * time.Second}, emb)
	bad := e.insert(1, "Z-1", "A cursed amulet", "Nobody can embed this.")
	e.insert(1, "Z-2", "A fine lamp", "Nothing wrong.")
	// The encoder creates its consumer once it runs: wait for it rather than race it.
	var cons jetstream.Consumer
	eventually(t, time.Minute, func() string {
		var err error
		if cons, err = e.js.Consumer(e.ctx, event.Stream, encoder.DefaultConsumer); err != nil {
			return fmt.Sprintf("consumer: %v", err)
		}
		return ""
	})
	// Past its last delivery (2) while the dead-letter stream cannot be created.
	eventually(t, 2*time.Minute, func() string {
		if n := fake.rejections(); n < 8 {
			return fmt.Sprintf("%d deliveries of the cursed event's text", n)
		}
		return ""
	})
	info, err := cons.Info(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream >= 1 || r.events("dead_lettered") != 0 {
		t.Fatalf("the cursed event (stream seq 1) was settled (ack floor %d, dead-lettered %v) without a copy in the dead-letter stream",
			info.AckFloor.Stream, r.events("dead_lettered"))
	}
	if err := e.js.DeleteStream(e.ctx, "SQUATTER"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, func() string {
		if r.events("dead_lettered") != 1 {
			return "not dead-lettered yet"
		}
		return ""
	})
	m := e.deadLetter(1)
	if id := deadLetteredID(m); id != bad.key.ID {
		t.Fatalf("dead-lettered product %d, want %d", id, bad.key.ID)
	}
	eventually(t, time.Minute, func() string {
		info, err := cons.Info(e.ctx)
		if err != nil || info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Sprintf("consumer not settled: %+v %v", info, err)
		}
		return ""
	})
}

// TestOpenAINegativeSettingsAreErrors: a negative batch, timeout or retry count is an error
// naming the flag, not silently replaced.
func TestOpenAINegativeSettingsAreErrors(t *testing.T) {
	for flag, cfg := range map[string]encoder.OpenAIConfig{
		"--embed-batch":   {Batch: -1},
		"--embed-timeout": {Timeout: -time.Second},
		"--embed-retries": {Retries: -1},
	} {
		cfg.URL, cfg.Model = "http://127.0.0.1:1/v1", "m"
		if _, err := encoder.NewOpenAI(cfg, testLog(t)); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%+v: err = %v, want one naming %s", cfg, err, flag)
		}
	}
}
