// shiftsim -- a plain Verilog testbench that checks a ShiftCNN lane against exported vectors.
//
// It is the pattern a hardware team copies to point its own testbench at shiftsim's vectors:
// $readmemh every field of the "steps" table, drive the "in" fields, compare the "comb" fields
// before the clock edge and the "reg" fields after it. Run it in the vectors directory (the
// hex files are opened by their names), with the parameters from manifest.json:
//
//   iverilog -g2005 -s tb_shiftcnn_readmemh -P tb_shiftcnn_readmemh.STEPS=<steps rows> \
//            -P tb_shiftcnn_readmemh.B=<B> ... -o tb.vvp <rtl dir>/*.v && vvp tb.vvp
//
// It prints "shiftsim vectors: <rows> steps, <n> mismatches" and ends with $finish.
// Replace the DUT instance (u_dut) by your own implementation to check it.
`timescale 1ns / 1ps
module tb_shiftcnn_readmemh;
    parameter integer XBITS    = 8;
    parameter integer XSIGNED  = 0;
    parameter integer F        = 0;
    parameter integer RND      = 0;
    parameter integer B        = 4;
    parameter integer N        = 2;
    parameter integer T        = 4;
    parameter integer ACC_BITS = 32;
    parameter integer SAT      = 0;
    parameter integer STEPS    = 1;      // manifest["tables"]["steps"]["rows"]
    localparam integer XW    = XBITS + (XSIGNED ? 0 : 1);
    localparam integer RW    = XW + F;
    localparam integer TW    = RW + 1;
    localparam integer TREEW = TW + $clog2(T);
    localparam integer S     = (1 << (B - 1)) - 1 + N - 2;
    localparam integer NBITS = $clog2(N + 1);

    // one memory per field: word width = lanes x bits (manifest "word_bits")
    reg [0:0]          first_m [0:STEPS-1];
    reg [ACC_BITS-1:0] bias_m  [0:STEPS-1];
    reg [NBITS-1:0]    n_m     [0:STEPS-1];
    reg [T*XBITS-1:0]  x_m     [0:STEPS-1];
    reg [T*B-1:0]      idx_m   [0:STEPS-1];
    reg [T*TW-1:0]     term_m  [0:STEPS-1];
    reg [TREEW-1:0]    tree_m  [0:STEPS-1];
    reg [ACC_BITS-1:0] acc_m   [0:STEPS-1];
    reg [0:0]          ovf_m   [0:STEPS-1];

    reg                clk, en, first;
    reg [ACC_BITS-1:0] bias;
    reg [NBITS-1:0]    n;
    reg [T*XBITS-1:0]  x;
    reg [T*B-1:0]      idx;
    wire [T*TW-1:0]    term;
    wire [TREEW-1:0]   tree;
    wire [ACC_BITS-1:0] acc;
    wire               ovf, ovf_any;
    wire [(S+1)*RW-1:0] xs0;

    shiftcnn_lane #(.XBITS(XBITS), .XSIGNED(XSIGNED), .F(F), .RND(RND), .B(B), .N(N), .T(T),
                    .ACC_BITS(ACC_BITS), .SAT(SAT)) u_dut (
        .clk(clk), .en(en), .first(first), .bias(bias), .n(n), .x(x), .idx(idx),
        .term(term), .tree(tree), .acc(acc), .ovf(ovf), .ovf_any(ovf_any), .xs0(xs0));

    integer r, errors;
    initial begin
        $readmemh("first.hex", first_m);
        $readmemh("bias.hex", bias_m);
        $readmemh("n.hex", n_m);
        $readmemh("x.hex", x_m);
        $readmemh("idx.hex", idx_m);
        $readmemh("term.hex", term_m);
        $readmemh("tree.hex", tree_m);
        $readmemh("acc.hex", acc_m);
        $readmemh("ovf.hex", ovf_m);
        errors = 0; clk = 0; en = 1;
        for (r = 0; r < STEPS; r = r + 1) begin
            first = first_m[r]; bias = bias_m[r]; n = n_m[r]; x = x_m[r]; idx = idx_m[r];
            #1;   // combinational: selected terms and the adder tree
            if (term !== term_m[r] || tree !== tree_m[r]) begin
                errors = errors + 1;
                $display("step %0d: term %h (want %h) tree %h (want %h)", r, term, term_m[r],
                         tree, tree_m[r]);
            end
            clk = 1; #1;   // registered: the accumulator and its overflow flag
            if (acc !== acc_m[r] || ovf !== ovf_m[r]) begin
                errors = errors + 1;
                $display("step %0d: acc %h (want %h) ovf %b (want %b)", r, acc, acc_m[r],
                         ovf, ovf_m[r]);
            end
            clk = 0; #1;
        end
        $display("shiftsim vectors: %0d steps, %0d mismatches", STEPS, errors);
        $finish;
    end
endmodule
