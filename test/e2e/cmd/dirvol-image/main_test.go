package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSourceDateEpoch(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Time
		ok   bool
	}{
		{"", time.Unix(0, 0).UTC(), true},
		{"1700000000", time.Unix(1700000000, 0).UTC(), true},
		{"yesterday", time.Time{}, false},
		{"-5", time.Time{}, false},
	} {
		t.Setenv("SOURCE_DATE_EPOCH", tc.env)
		got, err := sourceDateEpoch()
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %v, %v; want %v, ok=%v", tc.env, got, err, tc.want, tc.ok)
		}
	}
}

func TestRunPrintReferenceAndUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-root", "../../../..", "-print-reference"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if ref := strings.TrimSpace(stdout.String()); !strings.HasPrefix(ref, "dirvol.csi.dev/dirvol:") {
		t.Errorf("-print-reference: %q, want deploy/base's dirvol.csi.dev/dirvol:<tag>", ref)
	}
	// Building without -version is refused before anything is built.
	if err := run(context.Background(), []string{"-root", "../../../.."}, &stdout, &stderr); !errors.Is(err, errUsage) {
		t.Errorf("no -version: %v, want a usage error", err)
	}
}
