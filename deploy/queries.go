package deploy

import (
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

//go:embed grafana/dashboards/tidemark.json prometheus/alerts.yml
var files embed.FS

// DashboardFile and AlertsFile are the dashboard and the alert rules, as paths in this folder.
const (
	DashboardFile = "grafana/dashboards/tidemark.json"
	AlertsFile    = "prometheus/alerts.yml"
)

// Query is one PromQL expression of the dashboard or the alert rules.
type Query struct {
	Where string // "panel Slot lag (bytes)", "alert TidemarkSlotLagHigh"
	Expr  string
}

// Panel is a dashboard panel, rows included, as much of it as the checks read.
type Panel struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// Dashboard is the dashboard JSON, as much of it as the checks read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// ReadDashboard parses the dashboard.
func ReadDashboard() (*Dashboard, error) {
	b, err := files.ReadFile(DashboardFile)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", DashboardFile, err)
	}
	return &d, nil
}

// Alert is one alerting rule.
type Alert struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ReadAlerts parses the alert rules.
func ReadAlerts() ([]Alert, error) {
	b, err := files.ReadFile(AlertsFile)
	if err != nil {
		return nil, err
	}
	var rules struct {
		Groups []struct {
			Rules []Alert `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		return nil, fmt.Errorf("%s: %w", AlertsFile, err)
	}
	var out []Alert
	for _, g := range rules.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// Queries lists every query of the dashboard's panels and of the alert rules.
func Queries() ([]Query, error) {
	d, err := ReadDashboard()
	if err != nil {
		return nil, err
	}
	var out []Query
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, Query{Where: fmt.Sprintf("panel %q query %s", p.Title, t.RefID), Expr: t.Expr})
		}
	}
	alerts, err := ReadAlerts()
	if err != nil {
		return nil, err
	}
	for _, a := range alerts {
		out = append(out, Query{Where: "alert " + a.Alert, Expr: a.Expr})
	}
	return out, nil
}

// grafanaVars are the variables Grafana replaces in a query before Prometheus sees it, with
// values of the right kind for parsing.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h")

// Parse parses a query as Prometheus would once Grafana has replaced its variables.
func Parse(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
}

// Series is what /metrics pages expose: for each series name (histograms as their _bucket,
// _sum and _count series, as Prometheus stores them), the label sets of its samples.
type Series map[string][]map[string]string

// ReadExposition adds the series of a Prometheus text exposition (a /metrics page) to s.
func (s Series) ReadExposition(r io.Reader) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return fmt.Errorf("parse metrics: %w", err)
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				for _, b := range m.GetHistogram().GetBucket() {
					bl := map[string]string{"le": fmt.Sprint(b.GetUpperBound())}
					for k, v := range ls {
						bl[k] = v
					}
					s[name+"_bucket"] = append(s[name+"_bucket"], bl)
				}
				s[name+"_bucket"] = append(s[name+"_bucket"], withLabel(ls, "le", "+Inf"))
				s[name+"_sum"] = append(s[name+"_sum"], ls)
				s[name+"_count"] = append(s[name+"_count"], ls)
			case dto.MetricType_SUMMARY:
				for _, q := range m.GetSummary().GetQuantile() {
					s[name] = append(s[name], withLabel(ls, "quantile", fmt.Sprint(q.GetQuantile())))
				}
				s[name+"_sum"] = append(s[name+"_sum"], ls)
				s[name+"_count"] = append(s[name+"_count"], ls)
			default:
				s[name] = append(s[name], ls)
			}
		}
	}
	return nil
}

func withLabel(ls map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range ls {
		out[a] = b
	}
	return out
}

// TargetLabels are added by Prometheus to every series it scrapes: a query may match or group
// by them although no /metrics page has them.
var TargetLabels = []string{"job", "instance"}

// Synthetic are the series Prometheus makes itself for every scrape target, with the jobs of
// prometheus.yml.
var Synthetic = Series{
	"up": {{"job": "replicate"}, {"job": "encode"}},
}

// Check parses expr and reports every vector selector in it that selects no series of s (a
// metric no process exports, or label matchers that no exported series satisfies), and every
// label an aggregation groups by that the series it aggregates do not have.
func (s Series) Check(expr string) []error {
	e, err := Parse(expr)
	if err != nil {
		return []error{fmt.Errorf("parse: %w", err)}
	}
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			if _, err := s.selected(n); err != nil {
				errs = append(errs, err)
			}
		case *parser.AggregateExpr:
			errs = append(errs, s.checkGrouping(n)...)
		}
		return nil
	})
	return errs
}

// selected returns the label sets of the series vs selects.
func (s Series) selected(vs *parser.VectorSelector) ([]map[string]string, error) {
	name := vs.Name
	var matchers []*labels.Matcher
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel {
			if m.Type == labels.MatchEqual {
				name = m.Value
			}
			continue
		}
		matchers = append(matchers, m)
	}
	if name == "" {
		return nil, fmt.Errorf("%s: selects no metric by name", vs)
	}
	candidates, ok := s[name]
	if !ok {
		candidates, ok = Synthetic[name]
	}
	if !ok {
		return nil, fmt.Errorf("%s: no process exports a series named %s", vs, name)
	}
	var out []map[string]string
	for _, ls := range candidates {
		if matchesAll(ls, matchers) {
			out = append(out, ls)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no series of %s has these labels (it has %s)", vs, name, labelSets(candidates))
	}
	return out, nil
}

func matchesAll(ls map[string]string, matchers []*labels.Matcher) bool {
	for _, m := range matchers {
		v, ok := ls[m.Name]
		if !ok && slices.Contains(TargetLabels, m.Name) {
			continue // added at scrape time: any value may match
		}
		if !m.Matches(v) {
			return false
		}
	}
	return true
}

func (s Series) checkGrouping(a *parser.AggregateExpr) []error {
	if a.Without || len(a.Grouping) == 0 {
		return nil
	}
	var sets []map[string]string
	parser.Inspect(a.Expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			got, _ := s.selected(vs)
			sets = append(sets, got...)
		}
		return nil
	})
	var errs []error
	for _, l := range a.Grouping {
		if slices.Contains(TargetLabels, l) {
			continue
		}
		if !slices.ContainsFunc(sets, func(ls map[string]string) bool { _, ok := ls[l]; return ok }) {
			errs = append(errs, fmt.Errorf("%s: groups by %s, which none of the series it aggregates has", a, l))
		}
	}
	return errs
}

func labelSets(sets []map[string]string) string {
	seen := map[string]bool{}
	for _, ls := range sets {
		var parts []string
		for k, v := range ls {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
		sort.Strings(parts)
		seen["{"+strings.Join(parts, ",")+"}"] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) > 8 {
		out = append(out[:8], "…")
	}
	return strings.Join(out, " ")
}
