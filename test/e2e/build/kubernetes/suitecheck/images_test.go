package suitecheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	imageutils "k8s.io/kubernetes/test/utils/image"
)

// imagesFile declares the references of the images the harness makes for
// the suite.
const imagesFile = "../../../images/suite.go"

// TestSuiteImageNames checks that every Suite*Ref constant of the harness's
// images package is an image of the pinned release's manifest, name and
// tag: the specs' pods name those, and nothing is pulled.
func TestSuiteImageNames(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), imagesFile, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	manifest := map[string]bool{}
	for _, c := range imageutils.GetImageConfigs() {
		manifest[c.GetE2EImage()] = true
	}
	found := 0
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if !strings.HasPrefix(name.Name, "Suite") || !strings.HasSuffix(name.Name, "Ref") || i >= len(vs.Values) {
				continue
			}
			lit, ok := vs.Values[i].(*ast.BasicLit)
			if !ok {
				t.Errorf("%s is not a string literal", name.Name)
				continue
			}
			ref, _ := strconv.Unquote(lit.Value)
			found++
			if !manifest[ref] {
				t.Errorf("%s = %q is not an image of the pinned release's test/utils/image/manifest.go", name.Name, ref)
			}
		}
		return true
	})
	if found == 0 {
		t.Fatalf("no Suite*Ref constants in %s", imagesFile)
	}
}
