//go:build !linux

package accounts_test

import "time"

// threadCPUTime has no portable implementation: elsewhere the timing test measures
// the wall clock.
func threadCPUTime() (time.Duration, bool) { return 0, false }
