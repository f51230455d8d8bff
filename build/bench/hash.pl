# Builds a hash of 20000 small records, sorts its keys, sums a field.
my %h;
for my $i (1..20000) { $h{"key$i"} = [$i, "v" x ($i % 60)]; }
my @k = sort keys %h;
my $n = 0;
$n += $h{$_}[0] for @k;
print "perl-hash: $n\n";
