package encoder

import (
	"context"
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"
)

// Embedder turns texts into vectors.
type Embedder interface {
	// Embed returns one vector per text, in order.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Model names the vectors; it is stored in product_embeddings.model, so vectors of two
	// models never mix.
	Model() string
	// Dim is the length of the vectors (0 when the embedder learns it from its first answer).
	Dim() int
}

// DefaultDim is the hash embedder's default dimension.
const DefaultDim = 384

// Hash is an offline, deterministic embedder: feature hashing of normalised word unigrams and
// bigrams with signed hashing, L2-normalised. Texts sharing words are near; it knows nothing
// of meaning, which makes it a fine default for tests, demos and benchmarks.
type Hash struct {
	dim int
}

var _ Embedder = (*Hash)(nil)

// NewHash returns a hash embedder of dim dimensions.
func NewHash(dim int) (*Hash, error) {
	if dim <= 0 || dim > 1<<16 {
		return nil, fmt.Errorf("hash embedder: dimension %d out of range 1..65536", dim)
	}
	return &Hash{dim: dim}, nil
}

// Model is "hash-v1-<dim>": the dimension is part of the model, since vectors of two
// dimensions cannot be compared.
func (h *Hash) Model() string { return fmt.Sprintf("hash-v1-%d", h.dim) }

// Dim returns the dimension.
func (h *Hash) Dim() int { return h.dim }

// Embed hashes every text; the vectors share one backing array.
func (h *Hash) Embed(_ context.Context, texts []string) ([][]float32, error) {
	flat := make([]float32, len(texts)*h.dim)
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v := flat[i*h.dim : (i+1)*h.dim : (i+1)*h.dim]
		h.embedInto(v, t)
		out[i] = v
	}
	return out, nil
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	// hashSeed is mixed into every token hash: changing it changes the model.
	hashSeed = 0x7469_6465_6d61_726b // "tidemark"
)

// mix is a 64-bit finaliser (splitmix64): FNV-1a's low bits are weak for short tokens.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// embedInto writes the vector of text into v (len dim). It walks the text once, hashing each
// lower-cased letter/digit run as it goes, so no token is ever allocated.
func (h *Hash) embedInto(v []float32, text string) {
	clear(v)
	dim := uint64(h.dim)
	add := func(x uint64) {
		x = mix(x ^ hashSeed)
		if x>>63 == 0 {
			v[(x&0x7fffffff_ffffffff)%dim]++
		} else {
			v[(x&0x7fffffff_ffffffff)%dim]--
		}
	}
	var (
		cur     uint64 = fnvOffset
		inWord  bool
		prev    uint64
		hasPrev bool
		buf     [utf8.UTFMax]byte
	)
	endWord := func() {
		add(cur)
		if hasPrev {
			// A bigram's hash is order-sensitive and distinct from either unigram's.
			add(mix(prev*31+0x9e3779b97f4a7c15) ^ cur)
		}
		prev, hasPrev = cur, true
		cur, inWord = fnvOffset, false
	}
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				if inWord {
					endWord()
				}
				continue
			}
			cur = (cur ^ uint64(c)) * fnvPrime
			inWord = true
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			if inWord {
				endWord()
			}
			continue
		}
		n := utf8.EncodeRune(buf[:], unicode.ToLower(r))
		for _, b := range buf[:n] {
			cur = (cur ^ uint64(b)) * fnvPrime
		}
		inWord = true
	}
	if inWord {
		endWord()
	}
	normalize(v)
}

// normalize scales v to unit length (a zero vector stays zero), so that a dot product is the
// cosine similarity.
func normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= inv
	}
}

// dot is the dot product of two vectors of the same length.
func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
