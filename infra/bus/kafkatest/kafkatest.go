// Package kafkatest starts an in-process Kafka-protocol broker (franz-go's kfake) for
// tests, so that the Kafka adapter and everything built on it are tested against the
// real wire protocol without a Kafka server or Docker.
//
// kfake behaves like a strict Kafka: it rejects produce and fetch requests for topics
// that were not created first (unless the cluster is started with
// kfake.AllowAutoTopicCreation) and session timeouts below 6 s, and it rebalances
// consumer groups like a real group coordinator.
package kafkatest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Port range for the brokers' listeners. It lies below Linux's ephemeral range
// (32768–60999), where a port picked by the kernel could still be held by an old
// client socket; the design asks every test server to listen below it.
const (
	portMin = 20000
	portMax = 32000
)

// Start starts a kfake cluster of brokers brokers (at least 1) listening on
// 127.0.0.1 and returns its seed addresses ("127.0.0.1:port", one per broker). The
// cluster is closed when t ends. opts are passed to kfake after ours (for example
// kfake.AllowAutoTopicCreation() or kfake.SeedTopics).
func Start(t testing.TB, brokers int, opts ...kfake.Opt) []string {
	t.Helper()
	c := StartCluster(t, brokers, opts...)
	return c.ListenAddrs()
}

// StartCluster is Start for tests that need the cluster itself (to move partitions,
// inject faults or inspect it).
func StartCluster(t testing.TB, brokers int, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	if brokers < 1 {
		t.Fatalf("kafkatest: brokers must be at least 1, got %d", brokers)
	}
	all := append([]kfake.Opt{
		kfake.NumBrokers(brokers),
		kfake.ListenFn(listenLowPort),
		kfake.ClusterID("mediamesh-test"),
	}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("kafkatest: start kfake with %d brokers: %v", brokers, err)
	}
	t.Cleanup(c.Close)
	return c
}

// listenLowPort listens on a random free port in [portMin, portMax) of the host
// kfake asks for (127.0.0.1), instead of a kernel-chosen ephemeral port.
func listenLowPort(network, address string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", address, err)
	}
	if port != "0" {
		return net.Listen(network, address)
	}
	var lastErr error
	for range 100 {
		p := portMin + rand.IntN(portMax-portMin)
		ln, err := net.Listen(network, net.JoinHostPort(host, fmt.Sprint(p)))
		if err == nil {
			return ln, nil
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free port in [%d, %d) on %s: %w", portMin, portMax, host, lastErr)
}
