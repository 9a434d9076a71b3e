package testenv

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Counter is the value of the counter without labels called name in reg.
func Counter(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	return metric(tb, reg, name).GetCounter().GetValue()
}

// Gauge is the value of the gauge without labels called name in reg.
func Gauge(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	return metric(tb, reg, name).GetGauge().GetValue()
}

func metric(tb testing.TB, reg *prometheus.Registry, name string) *dto.Metric {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0]
		}
	}
	tb.Fatalf("no metric %s", name)
	return nil
}
