package auth

import (
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/stretchr/testify/require"
)

func TestTimesAllow(t *testing.T) {
	day := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	lim := func(rs ...jwt.TimeRange) jwt.UserLimits { return jwt.UserLimits{Times: rs, Locale: "UTC"} }
	for _, tc := range []struct {
		name  string
		l     jwt.UserLimits
		now   time.Time
		in    bool
		until time.Time
	}{
		{"no ranges", jwt.UserLimits{}, at(3, 0), true, time.Time{}},
		{"inside", lim(jwt.TimeRange{Start: "09:00:00", End: "17:00:00"}), at(10, 0), true, at(17, 0)},
		{"before", lim(jwt.TimeRange{Start: "09:00:00", End: "17:00:00"}), at(8, 0), false, time.Time{}},
		{"across midnight, after it", lim(jwt.TimeRange{Start: "22:00:00", End: "06:00:00"}), at(5, 0), true, at(6, 0)},
		{"across midnight, before it", lim(jwt.TimeRange{Start: "22:00:00", End: "06:00:00"}), at(23, 0), true, at(30, 0)},
		{"across midnight, outside", lim(jwt.TimeRange{Start: "22:00:00", End: "06:00:00"}), at(12, 0), false, time.Time{}},
		{"latest end of two", lim(jwt.TimeRange{Start: "08:00:00", End: "12:00:00"}, jwt.TimeRange{Start: "09:00:00", End: "18:00:00"}), at(10, 0), true, at(18, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			until, in := timesAllow(tc.l, tc.now)
			require.Equal(t, tc.in, in)
			require.True(t, tc.until.Equal(until), "until %v, want %v", until, tc.until)
		})
	}
}
