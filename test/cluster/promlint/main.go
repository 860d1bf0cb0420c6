// Command promlint reads a Prometheus text exposition on stdin, parses it with
// Prometheus's own parser (github.com/prometheus/common/expfmt) and lints it with
// client_golang's promlint (the checks of `promtool check metrics`: _total
// counters, base units, HELP present, snake_case names ...). It prints one line per
// problem and exits 1 when there is any, 2 when the text does not parse.
// test/agent uses it on the agent's /metrics and its textfile.
package main

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func main() {
	// Legacy (Prometheus 2) names: what scrapers and node_exporter accept without escaping.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(os.Stdin)
	if err != nil {
		fmt.Printf("parse: %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("families %d\n", len(families))
	problems, err := promlint.NewWithMetricFamilies(toList(families)).Lint()
	if err != nil {
		fmt.Printf("lint: %v\n", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Printf("problem %s: %s\n", p.Metric, p.Text)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
