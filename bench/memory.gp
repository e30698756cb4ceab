# Memory per idle connection: growth of the server's private memory (USS, summed
# over its processes) divided by the connections it holds.
load 'bench/common.gp'
set output outbase.ext
set title "Server memory per idle connection (private memory growth / connections)\n".machine
set ylabel 'bytes per connection'
set logscale y
set yrange [10:*]
set style fill solid 0.6 border -1
set boxwidth 0.6
set xtics rotate by -30
unset key
plot datafile every ::1 using 0:($5 > 10 ? $5 : 10):xtic(sprintf('%s (%d)', strcol(1), $2)) with boxes, \
     '' every ::1 using 0:($5 > 10 ? $5 : 10):(sprintf('%d B', $5)) with labels offset 0,0.8
