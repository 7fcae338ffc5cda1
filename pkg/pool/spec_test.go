package pool

import "testing"

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Spec
		ok   bool
	}{
		{"valid", "name=fast,path=/mnt/fast", Spec{Name: "fast", Path: "/mnt/fast"}, true},
		{"cleaned path", "path=/mnt/fast/,name=fast", Spec{Name: "fast", Path: "/mnt/fast"}, true},
		{"relative path", "name=fast,path=mnt", Spec{}, false},
		{"no name", "path=/mnt", Spec{}, false},
		{"slash in name", "name=a/b,path=/mnt", Spec{}, false},
		{"unknown key", "name=a,path=/mnt,size=1", Spec{}, false},
		{"not key=value", "fast", Spec{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSpec(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestValidateSpecs(t *testing.T) {
	tests := []struct {
		name  string
		specs []Spec
		ok    bool
	}{
		{"distinct", []Spec{{"a", "/p/a"}, {"b", "/p/b"}}, true},
		{"prefix but not nested", []Spec{{"a", "/p/a"}, {"b", "/p/ab"}}, true},
		{"same name", []Spec{{"a", "/p/a"}, {"a", "/p/b"}}, false},
		{"nested", []Spec{{"a", "/p"}, {"b", "/p/b"}}, false},
		{"same path", []Spec{{"a", "/p"}, {"b", "/p"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateSpecs(tc.specs); (err == nil) != tc.ok {
				t.Fatalf("ValidateSpecs = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
