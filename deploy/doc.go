// Package deploy holds the deployment files next to compose.yaml (Prometheus scrape config and
// alert rules); its tests check that compose.yaml, the Dockerfile and these files carry the
// settings the pipeline depends on, since Docker cannot run in CI.
package deploy
