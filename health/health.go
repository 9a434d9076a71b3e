package health

import "fmt"

// Level is a check's outcome.
type Level int

// Check outcomes, from good to bad. Only Fail means the pipeline cannot run.
const (
	OK Level = iota
	Warn
	Fail
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	default:
		return "FAIL"
	}
}

// MarshalText writes the level as ok, warn or FAIL.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads ok, warn or FAIL.
func (l *Level) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ok":
		*l = OK
	case "warn":
		*l = Warn
	case "FAIL":
		*l = Fail
	default:
		return fmt.Errorf("unknown check level %q", b)
	}
	return nil
}

// Check is one line of the doctor's report.
type Check struct {
	Name   string `json:"name"`
	Level  Level  `json:"status"`
	Detail string `json:"detail"`
	// Fix says what to do about a warning or failure.
	Fix string `json:"fix,omitempty"`
}

func ok(name, format string, args ...any) Check {
	return Check{Name: name, Level: OK, Detail: fmt.Sprintf(format, args...)}
}

func warn(name, fix, format string, args ...any) Check {
	return Check{Name: name, Level: Warn, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

func fail(name, fix, format string, args ...any) Check {
	return Check{Name: name, Level: Fail, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

// Worst is the worst level among checks (OK for none).
func Worst(checks []Check) Level {
	w := OK
	for _, c := range checks {
		w = max(w, c.Level)
	}
	return w
}

// FormatBytes writes n bytes for a person: 1.5 GiB.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for ; (f >= unit || f <= -unit) && i < 6; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[i-1])
}
