package main

// safetyScenarios are the rows of the safety rules under correlated faults (issue 9
// point 6 and issue 14: a request in flight to a node that hangs, ...): their owner adds
// them here, as scenario values, and they run after realCouchScenarios.
func safetyScenarios() []scenario { return nil }
