package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres means no PostgreSQL server binaries (initdb, postgres) were found.
var ErrNoPostgres = errors.New("PostgreSQL server binaries (initdb, postgres) not found: " +
	"install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) " +
	"or set TIDEMARK_PG_BIN to the directory holding initdb")

// PostgresOptions tunes a throw-away cluster. The zero value is a logical-replication-ready
// cluster tuned for speed over durability across OS crashes (fsync off), which is what tests,
// benchmarks and the demo want: a killed postmaster still recovers from its WAL.
type PostgresOptions struct {
	// Settings are extra postgresql.conf settings (name → value), applied after the defaults.
	Settings map[string]string
	// Dir is the parent directory for the data directory; default os.TempDir().
	Dir string
	// Log receives the server's stderr; default discarded (kept in a ring for error messages).
	Log *os.File
}

// Postgres is a running (or stopped) throw-away PostgreSQL cluster.
type Postgres struct {
	bin      string
	dataDir  string
	port     int
	portLock io.Closer // reserves port among test processes while the cluster exists
	cred     *syscall.Credential
	opts     PostgresOptions

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *Output
}

// FindPostgresBin returns the directory holding initdb and postgres: $TIDEMARK_PG_BIN, then
// PATH, then the usual Debian (/usr/lib/postgresql/N/bin, newest first) and Homebrew locations.
func FindPostgresBin() (string, error) {
	if dir := os.Getenv("TIDEMARK_PG_BIN"); dir != "" {
		if isExec(filepath.Join(dir, "initdb")) {
			return dir, nil
		}
		return "", fmt.Errorf("TIDEMARK_PG_BIN=%s holds no initdb: %w", dir, ErrNoPostgres)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	var candidates []string
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(debian, func(i, j int) bool { return versionOf(debian[i]) > versionOf(debian[j]) })
	candidates = append(candidates, debian...)
	brew, _ := filepath.Glob("/opt/homebrew/opt/postgresql*/bin")
	brew2, _ := filepath.Glob("/usr/local/opt/postgresql*/bin")
	candidates = append(candidates, brew...)
	candidates = append(candidates, brew2...)
	candidates = append(candidates, "/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin")
	for _, dir := range candidates {
		if isExec(filepath.Join(dir, "initdb")) && isExec(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// StartPostgres initialises a new cluster in a fresh temp directory and starts it on a free
// port on 127.0.0.1 (TCP only), reserved for it until Close (see reservePort); when another
// process takes the port first, it tries another. When the process runs as root, the cluster
// is owned by and run as the "postgres" OS user, because initdb and postgres refuse to run as
// root.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	bin, err := FindPostgresBin()
	if err != nil {
		return nil, err
	}
	p := &Postgres{bin: bin, opts: opts, logs: &Output{Max: 16 << 10}}
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			return nil, err
		}
		p.cred = cred
	}
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	// Our own directory rather than t.TempDir(): the postgres user must own it and be able to
	// reach it, and Go's test temp dirs are 0700 root.
	dir, err := os.MkdirTemp(parent, "tidemark-pg-")
	if err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	p.dataDir = filepath.Join(dir, "data")
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", dir, err)
	}
	if p.cred != nil {
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	initdb := p.command(ctx, "initdb", "-D", p.dataDir, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	var out bytes.Buffer
	initdb.Stdout, initdb.Stderr = &out, &out
	if err := initdb.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(out.String()))
	}
	for attempt := 1; ; attempt++ {
		if p.port, p.portLock, err = reserve(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		p.mu.Lock()
		err = p.start(ctx)
		p.mu.Unlock()
		if err == nil {
			return p, nil
		}
		_ = p.portLock.Close()
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			_ = os.RemoveAll(dir)
			if attempt > 1 {
				err = fmt.Errorf("after %d ports: %w", attempt, err)
			}
			return nil, err
		}
	}
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres OS user to own the cluster: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.cred != nil {
		cmd.SysProcAttr.Credential = p.cred
		cmd.Dir = "/"
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	return cmd
}

// settings returns the server's command-line settings: logical replication with room for many
// slots, and speed over crash-durability of the OS (never of the postmaster). Not
// synchronous_commit=off: logical decoding only sends flushed WAL, so commits would reach
// the slot up to wal_writer_delay late, and tests that expect "no change" would pass vacuously.
func (p *Postgres) settings() []string {
	s := map[string]string{
		"listen_addresses":                    "127.0.0.1",
		"port":                                strconv.Itoa(p.port),
		"unix_socket_directories":             "",
		"wal_level":                           "logical",
		"max_wal_senders":                     "20",
		"max_replication_slots":               "20",
		"max_connections":                     "200",
		"fsync":                               "off",
		"full_page_writes":                    "off",
		"shared_buffers":                      "256MB",
		"max_wal_size":                        "4GB",
		"wal_sender_timeout":                  "60s",
		"timezone":                            "UTC",
		"log_min_messages":                    "warning",
		"logical_decoding_work_mem":           "64MB",
		"max_worker_processes":                "16",
		"track_io_timing":                     "off",
		"autovacuum_naptime":                  "10s",
		"checkpoint_timeout":                  "15min",
		"max_slot_wal_keep_size":              "-1",
		"idle_in_transaction_session_timeout": "0",
	}
	for k, v := range p.opts.Settings {
		s[k] = v
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", p.dataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+s[k])
	}
	return args
}

// Start starts the server on its data directory and port and waits until it accepts
// connections. It is a no-op when the server is running. The port is the one the cluster
// first started on, so URLs stay valid: while another process holds it, Start waits up to
// restartWait and then says so.
func (p *Postgres) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	deadline := time.Now().Add(restartWait)
	for {
		err := p.start(ctx)
		if !errors.Is(err, errPortInUse) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restart postgres on its port %d: still taken by another process after %s, "+
				"and clients know only %s: %w", p.port, restartWait, p.URL("postgres"), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// start starts the server once; errPortInUse when its port is taken. p.mu is held.
func (p *Postgres) start(ctx context.Context) error {
	if p.cmd != nil {
		return nil
	}
	// Not CommandContext: the server outlives the ctx that started it.
	cmd := p.command(context.Background(), "postgres", p.settings()...)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// This start's own output, to tell a taken port from other failures.
	startLog := &Output{Max: 16 << 10}
	if p.opts.Log != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(p.opts.Log, startLog), io.MultiWriter(p.opts.Log, startLog)
	} else {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(p.logs, startLog), io.MultiWriter(p.logs, startLog)
	}
	// Pdeathsig follows the thread that forked: keep it alive for the child's lifetime.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p.cmd, p.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	for {
		// Bounded: something else listening on the port may accept and never answer.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var dir string
		conn, err := pgx.Connect(cctx, p.URL("postgres"))
		if err == nil {
			err = conn.QueryRow(cctx, "SHOW data_directory").Scan(&dir)
			_ = conn.Close(cctx)
		}
		cancel()
		switch {
		case err == nil && sameDir(dir, p.dataDir):
			return nil
		case err == nil:
			// Another server answers on our port, and ours is about to fail to bind it.
			p.stopStarting(cmd, done)
			return fmt.Errorf("postgres on 127.0.0.1:%d: %w: another server answers there (data directory %s)",
				p.port, errPortInUse, dir)
		}
		select {
		case <-done:
			p.cmd = nil
			out := strings.TrimSpace(startLog.String())
			if strings.Contains(out, "Address already in use") {
				return fmt.Errorf("postgres on 127.0.0.1:%d: %w: %s", p.port, errPortInUse, out)
			}
			return fmt.Errorf("postgres exited during start-up: %s", out)
		case <-ctx.Done():
			p.stopStarting(cmd, done)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stopStarting(cmd, done)
			return fmt.Errorf("postgres did not accept connections within 60s: %w", err)
		}
	}
}

// stopStarting kills a server that failed to start, so a retry does not find it still
// holding the data directory. p.mu is held.
func (p *Postgres) stopStarting(cmd *exec.Cmd, done <-chan struct{}) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
	}
	p.cmd = nil
}

// sameDir reports whether a and b name the same directory, symbolic links resolved (macOS's
// temp dir is one).
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// Stop shuts the server down cleanly (fast shutdown: active sessions are disconnected).
func (p *Postgres) Stop() error { return p.signal(syscall.SIGINT) }

// Kill sends SIGKILL to the postmaster and every backend, as a crash would; the next Start
// runs crash recovery.
func (p *Postgres) Kill() error { return p.signal(syscall.SIGKILL) }

func (p *Postgres) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	target := p.cmd.Process.Pid
	if sig == syscall.SIGKILL {
		target = -target // the whole process group: backends too
	}
	if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal postgres: %w", err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		return errors.New("postgres did not exit within 60s")
	}
	if sig == syscall.SIGKILL {
		// Orphaned backends notice the dead postmaster on their own; wait for the group to go
		// so the next start does not find their shared memory still attached.
		for i := 0; i < 200 && syscall.Kill(target, 0) == nil; i++ {
			time.Sleep(25 * time.Millisecond)
		}
	}
	p.cmd = nil
	return nil
}

// Close stops the server, removes its files and frees its port.
func (p *Postgres) Close() error {
	err := p.Stop()
	if rmErr := os.RemoveAll(filepath.Dir(p.dataDir)); rmErr != nil && err == nil {
		err = rmErr
	}
	if p.portLock != nil {
		_ = p.portLock.Close()
	}
	return err
}

// Port is the TCP port the server listens on (the same across restarts).
func (p *Postgres) Port() int { return p.port }

// BinDir is the directory of the server binaries (psql and pg_recvlogical usually sit beside).
func (p *Postgres) BinDir() string { return p.bin }

// DataDir is the cluster's data directory.
func (p *Postgres) DataDir() string { return p.dataDir }

// URL returns a connection URL for database db as the superuser postgres.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// CreateDatabase creates a new empty database and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return p.URL(name), nil
}

// Logs returns the tail of the server's log output (when no Log file was given).
func (p *Postgres) Logs() string { return strings.TrimSpace(p.logs.String()) }
