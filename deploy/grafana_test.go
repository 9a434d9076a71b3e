package deploy

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestComposeGrafana: Grafana starts with the provisioning folder and the dashboards folder
// mounted where the provider looks for them.
func TestComposeGrafana(t *testing.T) {
	c := loadCompose(t)
	g, ok := c.Services["grafana"]
	if !ok {
		t.Fatal("compose.yaml has no grafana service")
	}
	if !strings.HasPrefix(g.Image, "grafana/grafana:") {
		t.Errorf("grafana image %q", g.Image)
	}
	mounts := map[string]string{}
	for _, v := range g.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			mounts[parts[0]] = parts[1]
		}
	}
	if mounts["./deploy/grafana/provisioning"] != "/etc/grafana/provisioning" {
		t.Errorf("grafana does not mount ./deploy/grafana/provisioning on /etc/grafana/provisioning: %v", g.Volumes)
	}
	var provider struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/tidemark.yml", &provider)
	if len(provider.Providers) != 1 || provider.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers %+v, want one of type file", provider.Providers)
	}
	if got := mounts["./deploy/grafana/dashboards"]; got == "" || got != provider.Providers[0].Options.Path {
		t.Errorf("the dashboards folder is mounted on %q, the provider reads %q", got, provider.Providers[0].Options.Path)
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != provider.Providers[0].Options.Path+"/"+filepath.Base(DashboardFile) {
		t.Errorf("home dashboard %q is not the provisioned dashboard", home)
	}
	if g.DependsOn["prometheus"].Condition == "" {
		t.Errorf("grafana does not depend on prometheus: %v", g.DependsOn)
	}
	if !slices.Contains(g.Ports, "3000:3000") {
		t.Errorf("grafana ports %v, want 3000:3000", g.Ports)
	}

	var ds struct {
		Datasources []struct {
			Type      string `yaml:"type"`
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 {
		t.Fatalf("datasources %+v, want the one Prometheus", ds.Datasources)
	}
	d := ds.Datasources[0]
	p := c.Services["prometheus"]
	if d.Type != "prometheus" || !d.IsDefault || d.URL != "http://prometheus:9090" || !slices.Contains(p.Ports, "9090:9090") {
		t.Errorf("datasource %+v does not point at compose's prometheus service (ports %v)", d, p.Ports)
	}
}

// TestDashboard: the dashboard shows what the operators asked for, every panel queries the
// Prometheus data source through the dashboard's variable, and every alert rule is paired with
// a panel whose description names it (and names no alert that does not exist).
func TestDashboard(t *testing.T) {
	d, err := ReadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.UID != "tidemark" || len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" ||
		d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Fatalf("uid %q, templating %+v: want uid tidemark and a prometheus datasource variable", d.UID, d.Templating.List)
	}
	alerts, err := ReadAlerts()
	if err != nil {
		t.Fatal(err)
	}
	exists := map[string]bool{}
	for _, a := range alerts {
		exists[a.Alert] = true
	}
	named := map[string]bool{}
	alertName := regexp.MustCompile(`\bTidemark[A-Za-z]+\b`)
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 || p.Description == "" {
			t.Errorf("panel %q has no query or no description", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: query %s is empty", p.Title, tg.RefID)
			}
			exprs = append(exprs, tg.Expr)
		}
		for _, a := range alertName.FindAllString(p.Description, -1) {
			named[a] = true
			if !exists[a] {
				t.Errorf("panel %q names alert %s, which alerts.yml lacks", p.Title, a)
			}
		}
	}
	for a := range exists {
		if !named[a] {
			t.Errorf("alert %s is paired with no panel (no panel description names it)", a)
		}
	}
	// The list: each must be on the dashboard.
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		"tidemark_replication_slot_lag_bytes", "tidemark_replication_slot_lag_seconds",
		"tidemark_replication_changes_total", "tidemark_commit_to_ack_seconds_bucket",
		"tidemark_publish_in_flight", "tidemark_publish_failures_total", "tidemark_replication_reconnects_total",
		"tidemark_encoder_consumer_pending", "tidemark_encoder_consumer_ack_pending",
		"tidemark_embed_texts_total", "tidemark_embed_seconds_bucket", `result="dead_lettered"`,
		`tidemark_vectors{state=~"live|stale"}`, "tidemark_snapshot_rows", `op="snapshot"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
}

// TestQueriesParse: every dashboard and alert query is valid PromQL.
func TestQueriesParse(t *testing.T) {
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 20 {
		t.Fatalf("only %d queries", len(qs))
	}
	for _, q := range qs {
		if _, err := Parse(q.Expr); err != nil {
			t.Errorf("%s: %v", q.Where, err)
		}
	}
}

const exposition = `# HELP tidemark_commit_to_ack_seconds x
# TYPE tidemark_commit_to_ack_seconds histogram
tidemark_commit_to_ack_seconds_bucket{le="0.001"} 1
tidemark_commit_to_ack_seconds_bucket{le="+Inf"} 2
tidemark_commit_to_ack_seconds_sum 0.5
tidemark_commit_to_ack_seconds_count 2
# HELP tidemark_replication_changes_total x
# TYPE tidemark_replication_changes_total counter
tidemark_replication_changes_total{op="insert"} 3
tidemark_replication_changes_total{op="snapshot"} 0
# HELP tidemark_vectors x
# TYPE tidemark_vectors gauge
tidemark_vectors{model="hash-v1-384",state="live"} 10
tidemark_vectors{model="hash-v1-384",state="stale"} 0
`

// TestCheck: the check finds what a query selects and fails on what no process exports.
func TestCheck(t *testing.T) {
	s := Series{}
	if err := s.ReadExposition(strings.NewReader(exposition)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string
		bad  string // what the error must say; "" for a good query
	}{
		{expr: `histogram_quantile(0.99, sum by (le) (rate(tidemark_commit_to_ack_seconds_bucket[$__rate_interval])))`},
		{expr: `sum(rate(tidemark_commit_to_ack_seconds_sum[5m])) / sum(rate(tidemark_commit_to_ack_seconds_count[5m]))`},
		{expr: `sum by (op) (rate(tidemark_replication_changes_total{op=~"insert|snapshot"}[1m]))`},
		{expr: `max by (model, state) (tidemark_vectors{state="live", job="encode"})`},
		{expr: `{__name__="tidemark_vectors", state="stale"}`},
		{expr: `sum by (instance) (tidemark_vectors)`},
		{expr: `up{job="replicate"} == 0 or absent(up{job="replicate"})`},
		{expr: `tidemark_nope_total`, bad: "no process exports a series named tidemark_nope_total"},
		{expr: `rate(tidemark_commit_to_ack_seconds[5m])`, bad: "named tidemark_commit_to_ack_seconds"},
		{expr: `sum(rate(tidemark_replication_changes_total{op="upsert"}[5m]))`, bad: "no series of tidemark_replication_changes_total has these labels"},
		{expr: `tidemark_vectors{state="stale", model!~"hash.*"}`, bad: "has these labels"},
		{expr: `sum by (result) (tidemark_vectors)`, bad: "groups by result"},
		{expr: `max(tidemark_vectors{state="live"}) / max(tidemark_vectorz)`, bad: "tidemark_vectorz"},
		{expr: `up{job="replicator"}`, bad: "no series of up"},
		{expr: `sum(rate(tidemark_replication_changes_total[5m])`, bad: "parse"},
	}
	for _, tc := range tests {
		errs := s.Check(tc.expr)
		switch {
		case tc.bad == "" && len(errs) > 0:
			t.Errorf("%s: %v", tc.expr, errs)
		case tc.bad != "" && (len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.bad)):
			t.Errorf("%s: errors %v, want one saying %q", tc.expr, errs, tc.bad)
		}
	}
}
