#include "sum.h"
long sum(long a, long b) { return a + b; }
