set terminal pngcairo size 1000,600 font "sans,11" noenhanced
set output "results/studies/debian12-report/routing_entropy.png"
set title "Routing entropy per token"
set xlabel "training tokens"
set ylabel "entropy (nats, mean over layers)"
set key outside right top
set grid
set format x "%.1s%c"
plot "results/studies/debian12-report/routing_entropy.dat" index 0 using 1:2 with lines lw 2 title "lory-8 random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 1 using 1:2 with lines lw 2 title "lory-8 similarity seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 2 using 1:2 with lines lw 2 title "lory-8-copy random seed=1"
