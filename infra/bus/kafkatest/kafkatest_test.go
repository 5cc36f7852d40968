package kafkatest_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
)

func TestStart(t *testing.T) {
	t.Parallel()
	for _, brokers := range []int{1, 3} {
		t.Run(strconv.Itoa(brokers), func(t *testing.T) {
			t.Parallel()
			var addrs []string
			t.Run("running", func(t *testing.T) {
				addrs = kafkatest.Start(t, brokers)
				if len(addrs) != brokers {
					t.Fatalf("%d addresses for %d brokers", len(addrs), brokers)
				}
				for _, a := range addrs {
					host, port, err := net.SplitHostPort(a)
					if err != nil {
						t.Fatal(err)
					}
					if p, _ := strconv.Atoi(port); host != "127.0.0.1" || p >= 32768 || p < 1024 {
						t.Errorf("broker at %s: want 127.0.0.1 and a port below the ephemeral range", a)
					}
					c, err := net.DialTimeout("tcp", a, time.Second)
					if err != nil {
						t.Fatalf("dial %s: %v", a, err)
					}
					c.Close()
				}
			})
			// The subtest's cleanup closed the cluster.
			for _, a := range addrs {
				if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
					c.Close()
					t.Errorf("broker %s still accepts connections after the test ended", a)
				}
			}
		})
	}
}
