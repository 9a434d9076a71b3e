// Package deploy holds the deployment files next to compose.yaml (the Prometheus scrape config
// and alert rules, the Grafana dashboard and its provisioning) and reads the dashboard's and the
// alert rules' queries, so tests can check them: its own that compose.yaml, the Dockerfile and
// these files carry the settings the pipeline depends on (Docker cannot run in CI), and
// cmd/tidemark's that every query selects series the built replicate and encode export.
package deploy
