set terminal pngcairo size 1000,600 font "sans,11" noenhanced
set output "results/studies/debian12-report/routing_entropy.png"
set title "Routing entropy per token"
set xlabel "training tokens"
set ylabel "entropy (nats, mean over layers)"
set key outside right top
set grid
set format x "%.1s%c"
plot "results/studies/debian12-report/routing_entropy.dat" index 0 using 1:2 with lines lw 2 title "ec-segment-8 random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 1 using 1:2 with lines lw 2 title "ec-token-8 late-upcycling random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 2 using 1:2 with lines lw 2 title "ec-token-8 random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 3 using 1:2 with lines lw 2 title "lory-8 late-upcycling random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 4 using 1:2 with lines lw 2 title "lory-8 late-upcycling random seed=2", \
     "results/studies/debian12-report/routing_entropy.dat" index 5 using 1:2 with lines lw 2 title "lory-8 random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 6 using 1:2 with lines lw 2 title "lory-8 random seed=2", \
     "results/studies/debian12-report/routing_entropy.dat" index 7 using 1:2 with lines lw 2 title "lory-8 random seed=3", \
     "results/studies/debian12-report/routing_entropy.dat" index 8 using 1:2 with lines lw 2 title "lory-8 similarity seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 9 using 1:2 with lines lw 2 title "lory-8 similarity seed=2", \
     "results/studies/debian12-report/routing_entropy.dat" index 10 using 1:2 with lines lw 2 title "lory-8 similarity seed=3", \
     "results/studies/debian12-report/routing_entropy.dat" index 11 using 1:2 with lines lw 2 title "lory-8-copy random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 12 using 1:2 with lines lw 2 title "top1-8 random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 13 using 1:2 with lines lw 2 title "top1-8-scaled late-upcycling random seed=1", \
     "results/studies/debian12-report/routing_entropy.dat" index 14 using 1:2 with lines lw 2 title "top1-8-scaled late-upcycling random seed=2", \
     "results/studies/debian12-report/routing_entropy.dat" index 15 using 1:2 with lines lw 2 title "top1-8-scaled random seed=1"
