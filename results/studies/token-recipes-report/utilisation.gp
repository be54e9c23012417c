set terminal pngcairo size 1000,600 font "sans,11" noenhanced
set output "results/studies/token-recipes-report/utilisation.png"
set title "Experts activated (weight > 2/E) by some token of the logged batch"
set xlabel "training tokens"
set ylabel "experts in use (mean over layers)"
set key outside right top
set grid
set format x "%.1s%c"
set yrange [0:32]
plot "results/studies/token-recipes-report/utilisation.dat" index 0 using 1:2 with lines lw 2 title "fine32-k3-shared1 seed=1", \
     "results/studies/token-recipes-report/utilisation.dat" index 1 using 1:2 with lines lw 2 title "lory-8 seed=1", \
     "results/studies/token-recipes-report/utilisation.dat" index 2 using 1:2 with lines lw 2 title "top1-8 seed=1", \
     "results/studies/token-recipes-report/utilisation.dat" index 3 using 1:2 with lines lw 2 title "top2-8-half seed=1", \
     "results/studies/token-recipes-report/utilisation.dat" index 4 using 1:2 with lines lw 2 title "top2-8-half-lossfree seed=1"
