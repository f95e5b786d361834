import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { SERIES } from './format.ts';

const COLOURS = ['#1f5fbf', '#2e8b57', '#d08a00', '#c0392b'];

/** Recipients per minute, one line per fate, drawn by uPlot (canvas: cheap to redraw every few seconds). */
export function MinuteChart({ data, labels = SERIES, height = 260 }: { data: number[][]; labels?: readonly string[]; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current) return undefined;
    const opts: uPlot.Options = {
      width: box.current.clientWidth || 800,
      height,
      series: [{}, ...labels.map((name, i) => ({ label: name, stroke: COLOURS[i % COLOURS.length] as string, width: 2, points: { show: false } }))],
      axes: [{}, { label: 'recipients / min', size: 60 }],
      scales: { x: { time: true } },
      legend: { live: true },
    };
    plot.current = new uPlot(opts, data as uPlot.AlignedData, box.current);
    const resize = (): void => plot.current?.setSize({ width: box.current?.clientWidth ?? 800, height });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => plot.current?.setData(data as uPlot.AlignedData), [data]);
  return <div class="chart" ref={box} />;
}
