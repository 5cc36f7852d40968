// Package compose holds only tests of MediaMesh's Docker Compose stack: the files
// in this directory (compose.yaml, nginx/, prometheus/, grafana/, k6/) are checked
// without a Docker engine — compose-go loads the stack for every profile, nginx and
// promtool validate their configurations, k6 parses every scenario, and a live
// /metrics scrape of MediaMesh's roles must contain every metric the dashboard and
// the alerts use.
package compose
