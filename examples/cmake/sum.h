long sum(long a, long b);
