// Command bench measures every pipeline stage against its baseline in the same run, on a
// throw-away PostgreSQL and an embedded nats-server, and writes bench/out/results.json.
// Machines are shared and noisy: read the ratios, not the absolute times.
//
//	go run ./bench -rows 1000000 -stages load,replicate
package main
