package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// cpuMeter attributes the CPU-seconds spent while a stage runs to the processes that spent
// them: each PostgreSQL process by its role (the walsender, the backends of each tidemark
// command by application_name, the background processes), the tidemark subprocesses, and
// this process itself, which embeds the nats-server (its polling of the stream is a small
// part). CPU time, unlike wall time, barely moves with the other work on a shared machine.
//
// PostgreSQL processes are read from /proc/<pid>/stat every sampleEvery; a backend that exits
// between two samples leaves its last interval unattributed, and that remainder (from the
// postmaster's cutime and cstime, which gain what each reaped child spent) is reported as
// "postgres: exited between samples".
type cpuMeter struct {
	pool       *pgxpool.Pool
	postmaster int
	self0      time.Duration
	pm0        time.Duration // the postmaster's reaped children at the start
	pmSelf0    time.Duration // the postmaster's own at the start
	stop       context.CancelFunc
	done       chan struct{}

	mu    sync.Mutex
	procs map[int]*procTimes // children of the postmaster
	extra map[string]time.Duration
	track map[int]*procTimes // tidemark subprocesses being watched
}

type procTimes struct {
	role       string
	base, last time.Duration
}

const sampleEvery = 200 * time.Millisecond

// startCPUMeter starts measuring the cluster behind pool (whose connections it also names).
func startCPUMeter(ctx context.Context, pool *pgxpool.Pool) (*cpuMeter, error) {
	var backend int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil, fmt.Errorf("cpu meter: %w", err)
	}
	st, err := readStat(backend)
	if err != nil {
		return nil, fmt.Errorf("cpu meter: %w", err)
	}
	pm, err := readStat(st.ppid)
	if err != nil {
		return nil, fmt.Errorf("cpu meter: postmaster: %w", err)
	}
	m := &cpuMeter{pool: pool, postmaster: st.ppid, self0: selfCPU(), pm0: pm.children, pmSelf0: pm.cpu,
		procs: map[int]*procTimes{}, extra: map[string]time.Duration{}, track: map[int]*procTimes{}, done: make(chan struct{})}
	m.sample(ctx, true)
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stop = stop
	go func() {
		defer close(m.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				m.sample(sctx, false)
			}
		}
	}()
	return m, nil
}

// watch samples a subprocess (replicate, encode) until the meter stops; it must still be
// running then, so stop the meter before the process.
func (m *cpuMeter) watch(role string, pid int) {
	st, err := readStat(pid)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.track[pid] = &procTimes{role: role, base: st.cpu, last: st.cpu}
}

// add counts CPU a finished subprocess spent (from its rusage).
func (m *cpuMeter) add(role string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.extra[role] += d
}

func (m *cpuMeter) sample(ctx context.Context, first bool) {
	kids := children(m.postmaster)
	m.mu.Lock()
	var unknown []int
	for _, pid := range kids {
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		p, ok := m.procs[pid]
		if !ok {
			p = &procTimes{}
			if first {
				p.base = st.cpu
			}
			m.procs[pid] = p
		}
		p.last = st.cpu
		if p.role == "" {
			unknown = append(unknown, pid)
		}
	}
	for pid, p := range m.track {
		if st, err := readStat(pid); err == nil {
			p.last = st.cpu
		}
	}
	m.mu.Unlock()
	if len(unknown) == 0 {
		return
	}
	rows, err := m.pool.Query(ctx, `SELECT pid, backend_type, coalesce(application_name, '') FROM pg_stat_activity WHERE pid = ANY($1)`, unknown)
	if err != nil {
		return
	}
	defer rows.Close()
	roles := map[int]string{}
	for rows.Next() {
		var pid int
		var typ, app string
		if rows.Scan(&pid, &typ, &app) != nil {
			return
		}
		switch {
		case typ == "walsender":
			roles[pid] = "postgres: walsender"
		case typ == "client backend" && app != "":
			roles[pid] = "postgres: backends of " + app
		case typ == "client backend":
			roles[pid] = "postgres: backends of the bench"
		default:
			roles[pid] = "postgres: background (" + typ + ")"
		}
	}
	m.mu.Lock()
	for pid, r := range roles {
		m.procs[pid].role = r
	}
	m.mu.Unlock()
}

// cpuLine is the CPU-seconds of one role.
type cpuLine struct {
	Role    string  `json:"role"`
	Seconds float64 `json:"cpu_seconds"`
}

// finish takes a last sample, stops the meter and returns CPU-seconds by role, largest first.
func (m *cpuMeter) finish(ctx context.Context) []cpuLine {
	m.sample(ctx, false)
	m.stop()
	<-m.done
	self := selfCPU() - m.self0
	m.mu.Lock()
	defer m.mu.Unlock()
	by := map[string]time.Duration{"bench process: embedded nats-server (and the bench's polling)": self}
	alive := map[int]bool{}
	for _, pid := range children(m.postmaster) {
		alive[pid] = true
	}
	var exitedSeen time.Duration
	for pid, p := range m.procs {
		role := p.role
		if role == "" {
			role = "postgres: other"
		}
		by[role] += p.last - p.base
		if !alive[pid] {
			exitedSeen += p.last
		}
	}
	if pm, err := readStat(m.postmaster); err == nil {
		if rest := pm.children - m.pm0 - exitedSeen; rest > 0 {
			by["postgres: exited between samples"] += rest
		}
		by["postgres: postmaster"] += pm.cpu - m.pmSelf0
	}
	for _, p := range m.track {
		by[p.role] += p.last - p.base
	}
	for r, d := range m.extra {
		by[r] += d
	}
	lines := make([]cpuLine, 0, len(by))
	for r, d := range by {
		if d > 0 {
			lines = append(lines, cpuLine{Role: r, Seconds: d.Seconds()})
		}
	}
	sortLines(lines)
	return lines
}

// sortLines puts the largest first.
func sortLines(lines []cpuLine) {
	slices.SortFunc(lines, func(a, b cpuLine) int {
		if a.Seconds != b.Seconds {
			if a.Seconds > b.Seconds {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Role, b.Role)
	})
}

// formatCPU renders lines as "role 1.23 s (x.x per 1k), …" for a results note.
func formatCPU(lines []cpuLine, rows int) string {
	var total float64
	parts := make([]string, 0, len(lines)+1)
	for _, l := range lines {
		total += l.Seconds
		parts = append(parts, fmt.Sprintf("%s %.2f s", l.Role, l.Seconds))
	}
	return fmt.Sprintf("CPU %.1f s in all (%.1f ms per 1k rows): %s", total, total*1e6/float64(rows), strings.Join(parts, ", "))
}

type procStat struct {
	ppid     int
	cpu      time.Duration // utime + stime
	children time.Duration // cutime + cstime: reaped children
}

// readStat parses /proc/<pid>/stat (proc(5)): the command may hold spaces and parentheses, so
// the fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-3], 10, 64); return n }
	return procStat{
		ppid:     int(num(4)),
		cpu:      time.Duration(num(14)+num(15)) * clockTick,
		children: time.Duration(num(16)+num(17)) * clockTick,
	}, nil
}

// children lists pid's child processes.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
