package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Deploy struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	Restart string   `yaml:"restart"`
	Ports   []string `yaml:"ports"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	readYAML(t, filepath.Join("..", "compose.yaml"), &c)
	return c
}

// flagValue returns the value after flag in a command line (`--flag value` or `--flag=value`).
func flagValue(cmd []string, flag string) (string, bool) {
	for i, a := range cmd {
		if a == flag && i+1 < len(cmd) {
			return cmd[i+1], true
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"encode", "grafana", "migrate", "nats-1", "nats-2", "nats-3", "postgres", "prometheus", "replicate"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
}

func TestComposePostgres(t *testing.T) {
	pg := loadCompose(t).Services["postgres"]
	if !strings.HasPrefix(pg.Image, "postgres:15") {
		t.Errorf("postgres image %q, want postgres:15", pg.Image)
	}
	settings := map[string]string{}
	for i, a := range pg.Command {
		if a == "-c" && i+1 < len(pg.Command) {
			k, v, _ := strings.Cut(pg.Command[i+1], "=")
			settings[k] = v
		}
	}
	if settings["wal_level"] != "logical" {
		t.Errorf("postgres command %v lacks -c wal_level=logical", pg.Command)
	}
	for _, s := range []string{"max_replication_slots", "max_wal_senders", "max_slot_wal_keep_size"} {
		if settings[s] == "" {
			t.Errorf("postgres command lacks -c %s", s)
		}
	}
	if settings["max_slot_wal_keep_size"] == "-1" {
		t.Error("max_slot_wal_keep_size is unlimited")
	}
	if pg.Healthcheck == nil {
		t.Error("postgres has no healthcheck")
	}
}

func TestComposeNATSCluster(t *testing.T) {
	c := loadCompose(t)
	nodes := []string{"nats-1", "nats-2", "nats-3"}
	for _, name := range nodes {
		s := c.Services[name]
		if !slices.Contains(s.Command, "-js") {
			t.Errorf("%s: JetStream not enabled on the command line (-js): %v", name, s.Command)
		}
		if v, _ := flagValue(s.Command, "--server_name"); v != name {
			t.Errorf("%s: --server_name %q", name, v)
		}
		if v, _ := flagValue(s.Command, "--cluster_name"); v == "" {
			t.Errorf("%s: no --cluster_name", name)
		}
		if v, _ := flagValue(s.Command, "--cluster"); !strings.HasSuffix(v, ":6222") {
			t.Errorf("%s: --cluster %q", name, v)
		}
		routes, _ := flagValue(s.Command, "--routes")
		for _, other := range nodes {
			if other != name && !strings.Contains(routes, "nats://"+other+":6222") {
				t.Errorf("%s: --routes %q lacks %s", name, routes, other)
			}
		}
		store, _ := flagValue(s.Command, "--store_dir")
		if store == "" || !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+store) }) {
			t.Errorf("%s: store dir %q is not on a volume (%v)", name, store, s.Volumes)
		}
		if s.Healthcheck == nil {
			t.Errorf("%s has no healthcheck", name)
		}
	}
}

func TestComposeTidemark(t *testing.T) {
	c := loadCompose(t)
	m := c.Services["migrate"]
	if m.Build == nil || !slices.Contains(m.Command, "migrate") || m.Restart != "no" {
		t.Errorf("migrate: build %v, command %v, restart %q; want a one-shot build of the image", m.Build, m.Command, m.Restart)
	}
	if m.DependsOn["postgres"].Condition != "service_healthy" {
		t.Errorf("migrate depends_on %v, want postgres healthy", m.DependsOn)
	}
	for name, want := range map[string]string{"replicate": ":9464", "encode": ":9465"} {
		s := c.Services[name]
		if s.Image != m.Image {
			t.Errorf("%s image %q, want the image migrate builds (%q)", name, s.Image, m.Image)
		}
		if len(s.Command) == 0 || s.Command[0] != name {
			t.Errorf("%s command %v", name, s.Command)
		}
		if v, _ := flagValue(s.Command, "--http-addr"); v != want {
			t.Errorf("%s --http-addr %q, want %q", name, v, want)
		}
		if s.DependsOn["migrate"].Condition != "service_completed_successfully" {
			t.Errorf("%s does not wait for migrate to complete: %v", name, s.DependsOn)
		}
		for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
			if s.DependsOn[n].Condition != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy", name, n)
			}
		}
		if s.Healthcheck == nil || !strings.Contains(strings.Join(s.Healthcheck.Test, " "), want+"/readyz") &&
			!strings.Contains(strings.Join(s.Healthcheck.Test, " "), strings.TrimPrefix(want, ":")+"/readyz") {
			t.Errorf("%s healthcheck does not probe /readyz on %s", name, want)
		}
	}
	for _, name := range []string{"migrate", "replicate", "encode"} {
		env := c.Services[name].Environment
		if !strings.HasPrefix(env["TIDEMARK_PG_URL"], "postgres://") {
			t.Errorf("%s TIDEMARK_PG_URL = %q", name, env["TIDEMARK_PG_URL"])
		}
		for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
			if !strings.Contains(env["TIDEMARK_NATS_URL"], "nats://"+n+":4222") {
				t.Errorf("%s TIDEMARK_NATS_URL = %q lacks %s", name, env["TIDEMARK_NATS_URL"], n)
			}
		}
	}
	if v, _ := flagValue(c.Services["replicate"].Command, "--replicas"); v != "3" {
		t.Errorf("replicate --replicas %q, want 3 (one copy per NATS node)", v)
	}
	if r := c.Services["encode"].Deploy.Replicas; r != 2 {
		t.Errorf("encode replicas %d, want 2", r)
	}
	p := c.Services["prometheus"]
	if !slices.ContainsFunc(p.Volumes, func(v string) bool { return strings.HasPrefix(v, "./deploy/prometheus:/etc/prometheus") }) {
		t.Errorf("prometheus does not mount ./deploy/prometheus: %v", p.Volumes)
	}
	if v, _ := flagValue(p.Command, "--config.file"); v != "/etc/prometheus/prometheus.yml" {
		t.Errorf("prometheus --config.file %q", v)
	}
}

func TestPrometheusConfig(t *testing.T) {
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &cfg)
	if !slices.Contains(cfg.RuleFiles, "/etc/prometheus/alerts.yml") {
		t.Errorf("rule_files %v lacks /etc/prometheus/alerts.yml", cfg.RuleFiles)
	}
	targets := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], s.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets[sc.JobName] = append(targets[sc.JobName], n+":"+strconv.Itoa(d.Port))
			}
		}
	}
	if !slices.Equal(targets["replicate"], []string{"replicate:9464"}) {
		t.Errorf("replicate targets %v", targets["replicate"])
	}
	if !slices.Equal(targets["encode"], []string{"encode:9465"}) {
		t.Errorf("encode targets %v", targets["encode"])
	}
}

func TestAlertRules(t *testing.T) {
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, "prometheus/alerts.yml", &rules)
	exprs := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs[r.Alert] = r.Expr
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.For == "" {
				t.Errorf("alert %s lacks severity, summary or for", r.Alert)
			}
		}
	}
	want := map[string]*regexp.Regexp{
		"TidemarkSlotLagHigh":         regexp.MustCompile(`tidemark_replication_slot_lag_bytes\b.*>`),
		"TidemarkConsumerPendingHigh": regexp.MustCompile(`tidemark_encoder_consumer_pending\b.*>`),
		"TidemarkReplicateDown":       regexp.MustCompile(`up\{job="replicate"\} == 0`),
	}
	for alert, re := range want {
		if e, ok := exprs[alert]; !ok || !re.MatchString(e) {
			t.Errorf("alert %s: expr %q, want one matching %s", alert, e, re)
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") {
		t.Errorf("FROM lines %v: want a Go build stage and a runtime stage", froms)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("USER %q: the runtime image must not run as root", user)
	}
	if !strings.Contains(string(b), "./cmd/tidemark") {
		t.Error("Dockerfile does not build ./cmd/tidemark")
	}
}
